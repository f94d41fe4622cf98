"""The matrix's reader, run as a child process: a file of a mount read and checked byte by byte.

    python reader.py '{"path": ..., "mode": "seq"|"random", "chunk": N, "count": N, "seed": N,
                       "ref": FILE, "size": N, "pause_after": N|null}'

One open file for the whole run. `seq` reads it from the start in `chunk`-byte `read()`s, as
`dd bs=1M` does (after a failed read it seeks past that chunk and goes on, as `conv=noerror`);
`random` makes `count` `pread()`s of `chunk` bytes at offsets drawn from `random.Random(seed)`.
Each read's bytes are compared with the same range of `ref` (the reference simulator's copy).
Stdout gets one JSON line per read, `{"off", "n", "err", "s", "bad"}` (err: an errno name,
"short" for a read that ended before the end of file, or null; bad: bytes that differ from
the reference), flushed at once so that the parent can act between reads. With `pause_after`
K it prints `{"paused": K}` after K reads and waits for a line on stdin before going on.

A child process because a read that the mount never answers leaves its caller in the kernel:
the parent kills this process (SIGKILL ends a waiting FUSE request) instead of hanging.
Standard library only: it runs as a plain script.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import random
import sys
import time
from typing import Any


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _differing(got: bytes, want: bytes) -> int:
    if got == want:
        return 0
    common = min(len(got), len(want))
    return sum(1 for a, b in zip(got[:common], want[:common], strict=True) if a != b) + abs(
        len(got) - len(want)
    )


def _offsets(spec: dict[str, Any]) -> list[int] | None:
    if spec["mode"] == "seq":
        return None
    rng = random.Random(spec["seed"])
    top = max(1, spec["size"] - spec["chunk"])
    return [rng.randrange(0, top) for _ in range(spec["count"])]


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(argv[1])
    size: int = spec["size"]
    chunk: int = spec["chunk"]
    pause_after: int | None = spec.get("pause_after")
    with open(spec["ref"], "rb") as ref_file:
        ref = mmap.mmap(ref_file.fileno(), 0, access=mmap.ACCESS_READ)
    fd = os.open(spec["path"], os.O_RDONLY)
    try:
        planned = _offsets(spec)
        done = 0
        offset = 0
        while (planned is None and offset < size) or (planned is not None and done < len(planned)):
            if pause_after is not None and done == pause_after:
                _emit({"paused": done})
                sys.stdin.readline()
            if planned is not None:
                offset = planned[done]
            want = min(chunk, size - offset)
            started = time.monotonic()
            err: str | None = None
            data = b""
            try:
                data = os.pread(fd, chunk, offset) if planned is not None else os.read(fd, chunk)
            except OSError as exc:
                err = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            seconds = time.monotonic() - started
            if err is None and len(data) < want:
                err = "short"
            bad = _differing(data, ref[offset : offset + len(data)]) if data else 0
            _emit({"off": offset, "n": len(data), "err": err, "s": round(seconds, 4), "bad": bad})
            done += 1
            if planned is None and err is None:
                offset += len(data)
            elif planned is None:
                # Past a failed or short read, as dd conv=noerror: the next chunk.
                offset += chunk
                os.lseek(fd, offset, os.SEEK_SET)
        _emit({"end": done})
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
