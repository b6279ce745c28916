"""The failure catalog under this project's name: a re-export of `sft_contract.catalog`, its one definition.

The catalog moved into the SFT contract kit so that the kit stands on its own; this module keeps the
project's command and pointers as they were:

    python -m homework.catalog          # the whole catalog as markdown (the same as python -m sft_contract.catalog)
    python -m homework.catalog 5        # row 5 only

`explain(row)` ends with `(python -m homework.catalog N)`, as this project's messages always did.
"""

from __future__ import annotations

import sys

from sft_contract import catalog as _kit
from sft_contract.catalog import CATALOG, ENTRIES, Entry, catalog_markdown, entry_markdown

__all__ = ["CATALOG", "ENTRIES", "Entry", "catalog_markdown", "entry_markdown", "explain", "main"]

COMMAND = "homework.catalog"


def explain(row: int) -> str:
    return _kit.explain(row, command=COMMAND)


def main(argv: list[str] | None = None) -> int:
    return _kit.main(argv, prog=COMMAND)


if __name__ == "__main__":
    sys.exit(main())
