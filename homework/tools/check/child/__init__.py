"""The checker's code that runs inside the child process, beside their package (driver.py loads it under a
private name). It imports nothing of this repository's `homework`."""
