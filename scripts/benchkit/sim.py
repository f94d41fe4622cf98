"""The archive simulator (`python -m mastfs.sim --port 0`) in its own process, and its stats.

A separate process so that it does not share the measuring process's GIL; loopback only.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from .common import PY, ROOT
from .procs import clean_env


class Simulator:
    """A started simulator: `url`, `proc`; `stop()` ends it (idempotent).

    Its stderr goes to `log_path`, or to ours when that is None.
    """

    def __init__(self, log_path: Path | None = None, args: Sequence[str] = ()) -> None:
        """`args`: more `mastfs sim` arguments (a profile, knobs)."""
        self._log: IO[str] | None = log_path.open("w") if log_path is not None else None
        self.proc = subprocess.Popen(
            [PY, "-m", "mastfs.sim", "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=clean_env(),
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("http"):
            self.stop()
            where = f"; log {log_path}" if log_path is not None else ""
            raise SystemExit(f"bench: the simulator did not start (said {line!r}){where}")
        self.url = line.strip()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def download_url(self, uri: str) -> str:
        return f"{self.url}/api/v0.1/Download/file?uri={urllib.parse.quote(uri, safe=':/')}"

    def files_url(self, uri: str) -> str:
        return f"{self.url}/files/{rel_path(uri)}"

    def stats(self) -> dict[str, Any]:
        with self._opener.open(f"{self.url}/__sim/stats", timeout=30) as resp:
            stats: dict[str, Any] = json.load(resp)
        return stats

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/__sim/stats/reset", data=b"", method="POST")
        with self._opener.open(req, timeout=30):
            pass

    def faults(self, **knobs: Any) -> None:
        """Change fault knobs (`latency_ms`, `bandwidth`...: mastfs/sim/faults.py; the others keep
        their values); no knobs clears them all."""
        path = "/__sim/faults" if knobs else "/__sim/faults/clear"
        body = json.dumps(knobs).encode() if knobs else b""
        req = urllib.request.Request(
            f"{self.url}{path}", data=body, method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with self._opener.open(req, timeout=30):
            pass

    def file_bytes(self, uri: str | None = None) -> int:
        s = self.stats()
        if uri is None:
            return int(s["totals"]["file_bytes"])
        return int(s["files"].get(uri, {}).get("bytes", 0))

    def file_requests(self, uri: str | None = None) -> int:
        s = self.stats()
        if uri is None:
            return int(s["totals"]["file_requests"])
        return int(s["files"].get(uri, {}).get("requests", 0))

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 10 s; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
        return self.proc.returncode


def rel_path(uri: str) -> str:
    """`mast:JWST/product/jw..._nis_rateints.fits` -> `JWST/jw..._nis/jw..._nis_rateints.fits`.

    The product's own exposure folder: its file name without the last `_suffix`. scripts/bench
    checks that the path exists in each mount before measuring.
    """
    collection, _, name = uri.removeprefix("mast:").partition("/product/")
    return f"{collection}/{name.rsplit('_', 1)[0]}/{name}"
