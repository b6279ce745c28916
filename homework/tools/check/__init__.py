"""`python -m homework.sft check PATH`: this project's SFT checks on a course package written elsewhere.

runner.py (this process) copies the package, starts driver.py in a subprocess on the copy and prints the
table; driver.py runs their code with the contract kit's checks and imports nothing of this package.
"""
