"""The benchmark's child processes: environment, timeouts, helpers; CPU and memory readings.

Mounts, unmounting and process liveness are `mastfs.system`'s; this module holds only what the
benchmark adds around its own children.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from .common import LAUNCHER, PY, ROOT, BenchError


def clean_env(**extra: str) -> dict[str, str]:
    # Loopback only: a proxy from the environment must not sit between clients and the simulator.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = str(ROOT) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def run(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`timeout -k 5 T cmd`: a wedged FUSE read must not wedge the benchmark."""
    full = ["timeout", "-k", "5", str(int(timeout)), *cmd]
    return subprocess.run(
        full, capture_output=True, text=True, env=env or clean_env(), cwd=ROOT, timeout=timeout + 15
    )


def run_helper(
    mode: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """`scripts/bench --helper MODE ARGS...` (see helper.py); its JSON answer."""
    done = run([PY, str(LAUNCHER), "--helper", mode, *args], timeout=timeout, env=env)
    if done.returncode != 0:
        raise BenchError(f"helper {mode} failed ({done.returncode}): {tail(done.stderr)}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def tail(text: str, n: int = 3) -> str:
    """The last `n` non-blank lines of a command's output, on one line, for an error cell."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])[:300]


def drop_caches() -> bool:
    """Write back and drop the page cache; False without root."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def memory_kb(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of `pid` in KiB (empty once it is gone)."""
    out: dict[str, int] = {}
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of `pid` so far (0 when unknown or gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def concurrently(cmds: list[list[str]], timeout: int = 300) -> tuple[float, list[str], list[str]]:
    """Start every command at once (each under `timeout`); wall seconds, stdouts, stderrs."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["timeout", "-k", "5", str(timeout), *c],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for c in cmds
    ]
    for p in procs:
        p.wait()
    wall = time.perf_counter() - started
    outputs = [p.communicate() for p in procs]
    return wall, [out for out, _ in outputs], [err for _, err in outputs]
