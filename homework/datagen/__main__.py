"""`python -m homework.datagen [--check] [--out DIR]`."""

from .generate import main

raise SystemExit(main())
