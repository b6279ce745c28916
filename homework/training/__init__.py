"""Training: the options (config), the recipe that builds model, data, collator and trainer from them, the
trainer, collation and sampling, LoRA, the health guard and pre-flight scan, checkpoints, metrics, faults, a
run end to end (run.py) and grading (evaluation.py).
"""
