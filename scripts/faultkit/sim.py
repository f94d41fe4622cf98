"""Archive simulators in their own processes: the faulty one under test and the honest reference.

`python -m mastfs sim --port 0` prints its URL on its first line. Faults and content changes go
through its HTTP control plane (`/__sim/faults`, `/__sim/change`), as any client would send them.
The reference is a second instance: the same catalog, the same deterministic bytes, no faults;
the bytes a mount must show are downloaded from it whole, once per product and generation.
"""

from __future__ import annotations

import hashlib
import json
import select
import signal
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from .common import MASTFS, ROOT, MatrixError, clean_env


class Simulator:
    """A started simulator: `url`; `stop()` ends it (idempotent). Its log goes to `log_path`."""

    def __init__(self, log_path: Path) -> None:
        self._log: IO[str] = log_path.open("w")
        self.proc = subprocess.Popen(
            [*MASTFS, "sim", "--port", "0"],
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
            raise MatrixError(f"the simulator did not start (said {line!r}); log {log_path}")
        self.url = line.strip()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        with self._opener.open(req, timeout=30) as resp:
            answer: dict[str, Any] = json.load(resp)
        return answer

    def faults(self, knobs: dict[str, Any]) -> None:
        self._post("/__sim/faults", knobs)

    def clear_faults(self) -> None:
        self._post("/__sim/faults/clear")

    def change(self, uri: str, generation: int) -> dict[str, Any]:
        return self._post("/__sim/change", {"uri": uri, "generation": generation})

    def stats(self) -> dict[str, Any]:
        with self._opener.open(f"{self.url}/__sim/stats", timeout=30) as resp:
            stats: dict[str, Any] = json.load(resp)
        return stats

    def download_url(self, uri: str) -> str:
        return f"{self.url}/api/v0.1/Download/file?uri={urllib.parse.quote(uri, safe=':/')}"

    def download(self, uri: str, dest: Path) -> int:
        """The whole file into `dest`; its size."""
        size = 0
        with self._opener.open(self.download_url(uri), timeout=120) as resp, dest.open("wb") as f:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                size += len(chunk)
        return size

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s (a stalled answer may hold a thread)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


class Reference:
    """The bytes a mount must show, from the reference simulator: one local file per version."""

    def __init__(self, sim: Simulator, folder: Path) -> None:
        self.sim = sim
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._files: dict[tuple[str, int], Path] = {}

    def path(self, uri: str, generation: int = 0) -> Path:
        """A local copy of `uri` at `generation`, as the reference simulator serves it."""
        key = (uri, generation)
        if key not in self._files:
            name = hashlib.sha256(uri.encode()).hexdigest()[:16]
            dest = self.folder / f"{name}-g{generation}.bin"
            self.sim.change(uri, generation)
            try:
                self.sim.download(uri, dest)
            finally:
                self.sim.change(uri, 0)
            self._files[key] = dest
        return self._files[key]


def mount_path(uri: str) -> str:
    """`mast:JWST/product/jw..._nis_rate.fits` -> `JWST/jw..._nis/jw..._nis_rate.fits`: the
    product's place in a nested mount (its `obs_id` folder is its name without the suffix)."""
    collection, _, name = uri.removeprefix("mast:").partition("/product/")
    return f"{collection}/{name.rsplit('_', 1)[0]}/{name}"
