"""astropy through `mast://` (`use_fsspec=True`) against astropy through a mount, same product.

The 4.32 GiB product of program 2734: `fits.getheader`, then `fits.open` and a 16×16 `.section`
in the middle of the cube. The `mast://` reader runs the way a science platform would: a fresh
process that imports nothing of mastfs (fsspec finds it by its entry point), cannot import
pyfuse3 and holds no capability; its cache is fresh, as is the mount's. Both must give the
simulator's bytes, and `mast://` must fetch no more of the product than the mount did.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from tests.clients.test_mount_clients import SimReader
from tests.core.test_fsspec import NO_FUSE, POWERLESS
from tests.support.mounting import mounted
from tests.support.reads import read_bytes
from tests.support.views import read_csv

pytestmark = pytest.mark.mount

_ASTROPY = NO_FUSE + """
import json
from astropy.io import fits
src = sys.argv[1]
options = {"use_fsspec": True} if src.startswith("mast://") else {}
header = fits.getheader(src, **options)
with fits.open(src, **options) as hdul:
    shape = hdul[1].shape
    cut = hdul[1].section[shape[0] // 2, shape[1] // 2, 100:116, 100:116]
where = [shape[0] // 2, shape[1] // 2]
print(json.dumps({"header": header.tostring(), "cut": cut.tolist(), "where": where}))
"""


def _astropy(
    source: str, env: dict[str, str] | None = None, prefix: list[str] | None = None
) -> Any:
    done = subprocess.run(
        [*(prefix or []), sys.executable, "-c", _ASTROPY, source],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_astropy_reads_the_same_bytes_through_mast_urls_fetching_no_more(
    sim: Any, sim_url: str, tmp_path: Path
) -> None:
    with mounted(tmp_path / "mnt", ["--program", "2734"], tmp_path / "mount-cache", sim_url) as m:
        rows = read_csv(read_bytes(m.path / "selection.csv"))[1]
        big = max(rows, key=lambda r: int(r["Size"]))
        uri = big["URI"]
        sim.reset_stats()
        through_mount = _astropy(str(m.path / big["Path"]))
        mount_bytes, mount_gets = sim.sent(uri), sim.gets(uri)

    sim.reset_stats()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "MASTFS_SERVER": sim_url,
    }
    through_fsspec = _astropy("mast://" + uri.removeprefix("mast:"), env, POWERLESS)
    fsspec_bytes = sim.sent(uri)

    assert through_fsspec == through_mount
    header = through_fsspec["header"]
    assert header.encode() == sim.expected(uri, 0, len(header))
    with fits.open(SimReader(uri)) as reference:
        i, j = through_fsspec["where"]
        expected = reference[1].section[i, j, 100:116, 100:116]
    assert np.array_equal(np.array(through_fsspec["cut"]), expected)
    assert 0 < fsspec_bytes <= mount_bytes, (fsspec_bytes, mount_bytes, mount_gets)
