"""Header texts as astropy reads them: what `headers/` must serve, built independently of it.

`astropy_text(f)` opens a simulator file with astropy through a file object that reads its
bytes by range (a 4 GiB product costs kilobytes), and writes for each HDU the line naming it
from `fits.info` (index, name, type, dimensions and format) and `repr(hdu.header)`: its cards,
80 columns each, one per line. The golden files of program 2734 (`tests/golden/headers-2734/`)
are these texts; `MASTFS_UPDATE_GOLDEN=1` rewrites them (tests/core/test_golden_headers.py).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

from astropy.io import fits

GOLDEN_HEADERS = Path(__file__).parent.parent / "golden" / "headers-2734"
UPDATE = os.environ.get("MASTFS_UPDATE_GOLDEN") == "1"


class RangeFile(io.RawIOBase):
    """A read-only, seekable file object over a simulator file's `read(offset, length)`."""

    def __init__(self, simfile: Any) -> None:
        self.simfile = simfile
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.simfile.size}[whence]
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: Any) -> int:
        data = bytes(self.simfile.read(self.pos, len(buffer)))
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def naming_line(row: tuple[Any, ...]) -> str:
    """`# HDU 1 SCI ImageHDU (2048, 256) float32` from a row of `fits.info(output=False)`."""
    index, name, _ver, kind, _cards, dims, fmt = row[:7]
    if kind == "BinTableHDU":
        shape = str(dims)
    elif not dims:
        shape = "(no data)"
    else:
        shape = "(" + ", ".join(str(d) for d in dims) + ") " + str(fmt).split()[0]
    return f"# HDU {index} {name} {kind} {shape}"


def astropy_text(simfile: Any) -> str:
    """The header text of a simulator FITS file, HDU by HDU, as astropy reads it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(io.BufferedReader(RangeFile(simfile)), memmap=False) as hdul:
            lines = []
            for row, hdu in zip(hdul.info(output=False), hdul, strict=True):
                lines.append(naming_line(row))
                lines.append(repr(hdu.header))
    return "\n".join(lines) + "\n"


def golden_name(filename: str) -> str:
    return filename + ".txt"
