"""The seeded question generator: `python -m homework.datagen [--check]` writes (or verifies) data/*.json.
"""
