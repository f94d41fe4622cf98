"""`python -m mastfs` runs the command line (the background daemon is started this way)."""

from __future__ import annotations

import sys

from mastfs.cli import main

sys.exit(main())
