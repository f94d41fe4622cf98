"""A mount of `/url/` products under the simulator's "mast" profile (issue 14, part 4).

Program 9998 (HLA) lists `mast:HLA/url/cgi-bin/getdata.cgi?...` products: the archive redirects
their downloads to a second host that ignores `Range` and sends neither `Content-Length` nor an
ETag. Through a real mount with the authorized token, `cat` must give every byte, `ls` the
catalogue's sizes, and the second host must never see the token.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mastfs.sim.catalog import AUTHORIZED_TOKEN
from tests.support import reads
from tests.support.mounting import mounted
from tests.support.sim import Sim

pytestmark = pytest.mark.mount


def test_url_products_read_whole_and_keep_the_token_home(sim: Sim, tmp_path: Path) -> None:
    sim.profile("mast")
    token = tmp_path / "token"
    token.write_text(AUTHORIZED_TOKEN + "\n")
    os.chmod(token, 0o600)
    logs = {
        f.uri: f
        for f in sim.server.catalog.files()
        if "/url/" in f.uri and f.filename.endswith(".txt")
    }
    assert len(logs) == 2
    args = ["--program", "9998", "--token-file", str(token)]
    with mounted(tmp_path / "mnt", args, tmp_path / "cache", server=sim.url) as m:
        for f in logs.values():
            path = m.path / f.collection / f.dataset / f.filename
            assert reads.stat(path).st_size == f.size
            assert reads.read_bytes(path) == sim.expected(f.uri, 0, f.size)
    for f in logs.values():
        stats = sim.file_stats(f.uri)
        assert stats["hosts"]["files"] >= 1 and stats["tokens_elsewhere"] == 0
