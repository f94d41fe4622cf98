"""`python -m mastfs.sim`: the same as `mastfs sim`."""

from __future__ import annotations

import sys

from mastfs.sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
