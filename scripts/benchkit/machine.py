"""What a run measured on: CPUs, memory, kernel, Python, the code's commit, the peers' versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import Any

from .common import ROOT


def machine() -> dict[str, Any]:
    mem_kb = 0
    with suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / (1 << 20), 1),
        "kernel": platform.release(),
        "cpu": cpu,
        "python": platform.python_version(),
        "mastfs_code": code_version(),
        "rclone": first_line(["rclone", "version"]),
        "httpdirfs": first_line(["httpdirfs", "--version"], "HTTPDirFS"),
    }


def code_version() -> str:
    """The commit measured, and which files of mastfs/ differed from it (read-only git)."""
    with suppress(OSError, subprocess.TimeoutExpired):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "mastfs"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=10,
        ).stdout.split("\n")
        changed = sorted(line[3:] for line in dirty if line.strip())
        if head:
            return f"{head}" + (f" + uncommitted {', '.join(changed)}" if changed else "")
    return "unknown"


def first_line(cmd: list[str], containing: str = "") -> str:
    """The first line of `cmd`'s output that contains `containing` (a version banner)."""
    if shutil.which(cmd[0]) is None:
        return f"{cmd[0]} not installed"
    with suppress(OSError, subprocess.TimeoutExpired):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        lines = (done.stdout + "\n" + done.stderr).strip().splitlines()
        return next((line for line in lines if containing in line), "?").strip()
    return "?"
