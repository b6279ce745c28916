"""`python -m homework.tools.check PATH [...]`: the same as `python -m homework.sft check PATH [...]`."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["check", *sys.argv[1:]]))
