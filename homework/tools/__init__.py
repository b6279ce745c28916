"""Commands on top of training: the command line (`python -m homework.sft`), doctor, the benchmark, the course
grader's calling convention and this project's SFT contract.
"""
