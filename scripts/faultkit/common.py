"""What every part of the fault matrix shares: paths, sizes, the child environment, its error."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
LAUNCHER = ROOT / "scripts" / "fault-matrix"
READER = Path(__file__).resolve().parent / "reader.py"
DOC = ROOT / "docs" / "integrity.md"
PY = sys.executable
MASTFS = [PY, "-m", "mastfs"]

KiB = 1 << 10
MiB = 1 << 20
SEQ_CHUNK = 1 * MiB  # the sequential reader's read size, as `dd bs=1M`
RANDOM_CHUNK = 64 * KiB  # the random reader's pread size
PROGRAM = "2734"
# A read may take --timeout plus this long (the bound the matrix reports against).
TIMEOUT_SLACK = 2.0


class MatrixError(Exception):
    """A case could not be run (a mount or a simulator failed); its row says why."""


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without proxies (loopback only), with the project first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = str(ROOT) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["LC_ALL"] = "C"
    env.update(extra)
    return env
