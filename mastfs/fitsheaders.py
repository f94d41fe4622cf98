"""FITS headers from a file's bytes: walking from header to header, and their text.

`HeaderWalk` is a pure parser over bytes: it says which offset it needs next (`want`), is fed
the bytes found there (`feed`), and ends with each HDU's header cards. It reads a header block
by block (2880 bytes) until its END card, then seeks over the HDU's data as astropy does:
|BITPIX|/8 x GCOUNT x (PCOUNT + NAXIS1 x ... x NAXISn), padded to 2880 (random groups skip
NAXIS1 = 0). Only the mandatory keywords that locate the next header are parsed, by hand: a
dozen integer and string values, with bounds of our own, where astropy's `Header.fromstring`
would parse every card (and its import alone costs the daemon a second).

A header is archive data, so everything is bounded: at most `MAX_HEADER_BLOCKS` blocks per
header, `MAX_HDUS` HDUs and `MAX_HEADER_BYTES` of headers per file; a missing END card, a first
header that is not SIMPLE, or a negative, malformed or absurd size raises `HeaderError` naming
the value. Bytes after the last
HDU that do not start an extension (zero padding, a truncated file) end the walk, as astropy
ignores them. `render` turns the headers into text: a line naming each HDU, then its cards, 80
columns each, one per line, bytes outside printable ASCII shown as `?`. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

FITS_BLOCK = 2880
CARD = 80
CARDS_PER_BLOCK = FITS_BLOCK // CARD
# A header of more than 1,000 blocks (36,000 cards, 2.8 MB) is not one an archive writes.
MAX_HEADER_BLOCKS = 1000
MAX_HDUS = 1000
# All headers of one file together: the text is held in memory (real products: < 100 KiB).
MAX_HEADER_BYTES = 4 << 20
MAX_NAXIS = 999
BITPIX_FORMATS = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32",
                  -64: "float64"}  # fmt: skip
_END = b"END" + b" " * 77
# Bytes a header text shows as "?": anything but printable ASCII (`bytes.translate` table).
_PRINTABLE = bytes(b if 0x20 <= b <= 0x7E else ord("?") for b in range(256))
_INTEGER = re.compile(r"[+-]?\d{1,30}")


class HeaderError(ValueError):
    """A file whose headers cannot be walked; the message names the offending value."""


@dataclass(frozen=True, slots=True)
class Hdu:
    """One HDU's header: where it starts, its cards (END excluded), and what they say."""

    index: int
    offset: int
    cards: tuple[bytes, ...]
    kind: str  # PrimaryHDU | ImageHDU | BinTableHDU | TableHDU | the XTENSION value
    extname: str
    bitpix: int
    naxes: tuple[int, ...]
    data_size: int  # bytes, before padding

    def value(self, keyword: str) -> str | int | None:
        """The value of the first card `keyword` (a string or an integer), None if absent."""
        return _card_values(self.cards, {keyword}).get(keyword)

    def all_values(self) -> dict[str, str | int | None]:
        """Each valued keyword's first value (strings and integers; None for other values)."""
        return _card_values(self.cards, None)

    def describe(self) -> str:
        """The line naming the HDU: index, EXTNAME, type and dimensions."""
        name = self.extname or ("PRIMARY" if self.index == 0 else "")
        if self.kind == "BinTableHDU" and len(self.naxes) == 2:
            shape = f"{self.naxes[1]}R x {self.value('TFIELDS') or 0}C"
        elif not self.naxes or math.prod(self.naxes) == 0:
            shape = "(no data)"
        else:
            shape = "(" + ", ".join(str(n) for n in self.naxes) + ")"
            shape += " " + BITPIX_FORMATS.get(self.bitpix, f"BITPIX={self.bitpix}")
        return f"# HDU {self.index} {name or '-'} {self.kind} {shape}"


@dataclass
class HeaderWalk:
    """The walk over one file of `file_size` bytes.

    Drive it with `while (at := walk.want()) is not None: walk.feed(at, read(at, n))`, where a
    read may return any number of bytes from 1 up (more than one block is used, not wasted).
    """

    file_size: int
    hdus: list[Hdu] = field(default_factory=list)
    _offset: int = 0  # where the header being read starts
    _blocks: list[bytes] = field(default_factory=list)
    _done: bool = False
    _total: int = 0  # header bytes taken so far

    def want(self) -> int | None:
        """The offset of the next bytes needed, None when the walk is over."""
        if self._done:
            return None
        return self._offset + len(self._blocks) * FITS_BLOCK

    def feed(self, offset: int, data: bytes | memoryview) -> None:
        """Bytes read at `offset` (which must be `want()`). A partial block at the end of
        `data` is asked for again, unless `data` reaches the end of the file (or is empty):
        the file then ends inside a block."""
        if offset != self.want():
            raise ValueError(f"fed offset {offset}, wanted {self.want()}")
        view = memoryview(data)
        at_end = len(view) == 0 or offset + len(view) >= self.file_size
        if len(view) < FITS_BLOCK and not at_end:
            raise ValueError(f"fed {len(view)} bytes at {offset}: less than a block, not at EOF")
        while not self._done and len(view) >= FITS_BLOCK:
            block = bytes(view[:FITS_BLOCK])
            view = view[FITS_BLOCK:]
            skip = self._take(block)
            if skip:
                # Bytes of the data section that came with the block: seek over them.
                if skip >= len(view):
                    return
                view = view[skip:]
        if not self._done and at_end and len(view) < FITS_BLOCK:
            self._end_short()

    def _end_short(self) -> None:
        if self._blocks:
            raise HeaderError(
                f"HDU {len(self.hdus)} at byte {self._offset}: the file ends before its END card"
            )
        if not self.hdus:
            raise HeaderError("not a FITS file: shorter than one 2880-byte block")
        self._done = True

    def _take(self, block: bytes) -> int:
        """Add one block; at END, record the HDU and return the data bytes to skip."""
        if not self._blocks and not self._starts_hdu(block):
            return 0
        self._blocks.append(block)
        self._total += FITS_BLOCK
        if self._total > MAX_HEADER_BYTES:
            raise HeaderError(
                f"HDU {len(self.hdus)} at byte {self._offset}: the headers exceed "
                f"{MAX_HEADER_BYTES >> 20} MiB"
            )
        end = _end_card(block)
        if end is None:
            if len(self._blocks) >= MAX_HEADER_BLOCKS:
                raise HeaderError(
                    f"HDU {len(self.hdus)} at byte {self._offset}: no END card in "
                    f"{MAX_HEADER_BLOCKS} blocks"
                )
            return 0
        raw = b"".join(self._blocks[:-1]) + block[: end * CARD]
        cards = _strip_blank_tail(tuple(raw[i : i + CARD] for i in range(0, len(raw), CARD)))
        hdu = _hdu(len(self.hdus), self._offset, cards)
        self.hdus.append(hdu)
        header_end = self._offset + len(self._blocks) * FITS_BLOCK
        padded = -(-hdu.data_size // FITS_BLOCK) * FITS_BLOCK
        self._offset = header_end + padded
        self._blocks = []
        if len(self.hdus) >= MAX_HDUS or self._offset + FITS_BLOCK > self.file_size:
            self._done = True
        return padded

    def _starts_hdu(self, block: bytes) -> bool:
        if not self.hdus:
            if not block.startswith(b"SIMPLE  ="):
                raise HeaderError("not a FITS file: the first card is not SIMPLE")
            return True
        if block.startswith(b"XTENSION="):
            return True
        # Not an extension: padding or garbage after the last HDU, which astropy ignores too.
        self._done = True
        return False


def _end_card(block: bytes) -> int | None:
    at = block.find(_END)
    while at >= 0:
        if at % CARD == 0:
            return at // CARD
        at = block.find(_END, at + 1)
    # A non-standard END (trailing bytes not blank) is still the end of the header.
    for i in range(CARDS_PER_BLOCK):
        if block[i * CARD : i * CARD + 8] == b"END     ":
            return i
    return None


def _strip_blank_tail(cards: tuple[bytes, ...]) -> tuple[bytes, ...]:
    n = len(cards)
    while n and not cards[n - 1].strip():
        n -= 1
    return cards[:n]


def _parse_value(text: str) -> str | int | None:
    text = text.strip()
    if text.startswith("'"):
        out, i = [], 1
        while i < len(text):
            ch = text[i]
            if ch == "'":
                if text[i + 1 : i + 2] == "'":
                    out.append("'")
                    i += 2
                    continue
                return "".join(out).rstrip()
            out.append(ch)
            i += 1
        return None
    number = text.split("/", 1)[0].strip()
    if _INTEGER.fullmatch(number):
        return int(number)
    if number in ("T", "F"):
        return number
    return None


def _card_values(
    cards: tuple[bytes, ...], keywords: set[str] | None
) -> dict[str, str | int | None]:
    """The first value of each of `keywords` (None: of every keyword) found in `cards`."""
    out: dict[str, str | int | None] = {}
    for card in cards:
        if card[8:10] != b"= ":
            continue
        key = card[:8].decode("ascii", "replace").rstrip()
        if (keywords is None or key in keywords) and key not in out:
            out[key] = _parse_value(card[10:].decode("ascii", "replace"))
    return out


def _integer(values: dict[str, str | int | None], key: str, where: str, default: int | None,
             low: int, high: int | None = None) -> int:  # fmt: skip
    value = values.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise HeaderError(f"{where}: {key} is {_shown(values.get(key))}, not an integer")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise HeaderError(f"{where}: {key} = {value} is not {bounds}")
    return value


def _shown(value: object) -> str:
    return "missing" if value is None else repr(value)[:40]


_KINDS = {"IMAGE": "ImageHDU", "BINTABLE": "BinTableHDU", "TABLE": "TableHDU"}


# The keywords an HDU's layout is read from, as the 8 bytes a card starts with (NAXISn too).
_LAYOUT_KEYWORDS = ("XTENSION", "EXTNAME", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "GROUPS")
_STRUCTURAL = {k.ljust(8).encode() for k in _LAYOUT_KEYWORDS} | {
    f"NAXIS{i}".ljust(8).encode() for i in range(1, MAX_NAXIS + 1)
}


def _structural_values(cards: tuple[bytes, ...]) -> dict[str, str | int | None]:
    """`_card_values` of the `_STRUCTURAL` keywords, in one pass that decodes only theirs
    (a build parses ~100 cards an HDU; this is most of its time on the trio thread)."""
    out: dict[str, str | int | None] = {}
    for card in cards:
        key = card[:8]
        if key in _STRUCTURAL and card[8:10] == b"= ":
            name = key.decode("ascii").rstrip()
            if name not in out:
                out[name] = _parse_value(card[10:].decode("ascii", "replace"))
    return out


def _hdu(index: int, offset: int, cards: tuple[bytes, ...]) -> Hdu:
    where = f"HDU {index} at byte {offset}"
    values = _structural_values(cards)
    naxis = _integer(values, "NAXIS", where, None, 0, MAX_NAXIS)
    bitpix = _integer(values, "BITPIX", where, None, -64, 64)
    if bitpix not in BITPIX_FORMATS:
        raise HeaderError(f"{where}: BITPIX = {bitpix} is not one of 8, 16, 32, 64, -32, -64")
    naxes = tuple(_integer(values, f"NAXIS{i}", where, None, 0) for i in range(1, naxis + 1))
    primary = index == 0
    pcount = _integer(values, "PCOUNT", where, 0, 0)
    gcount = _integer(values, "GCOUNT", where, 1, 0)
    groups = primary and values.get("GROUPS") == "T" and naxes[:1] == (0,)
    if primary:
        kind = "PrimaryHDU"
    else:
        xtension = str(values.get("XTENSION") or "").strip()
        kind = _KINDS.get(xtension, xtension or "?")
    elements = math.prod(naxes[1:] if groups else naxes) if naxes else 0
    if naxis == 0 and not groups:
        data_size = 0
    else:
        data_size = abs(bitpix) // 8 * gcount * (pcount + elements)
    extname = values.get("EXTNAME")
    return Hdu(
        index=index,
        offset=offset,
        cards=cards,
        kind=kind,
        extname=extname if isinstance(extname, str) else "",
        bitpix=bitpix,
        naxes=naxes,
        data_size=data_size,
    )


def render(hdus: list[Hdu]) -> bytes:
    """The text of a file's headers: per HDU, its naming line, then its cards, one per line."""
    lines: list[bytes] = []
    for hdu in hdus:
        lines.append(hdu.describe().encode("ascii", "replace"))
        lines.extend(card.translate(_PRINTABLE) for card in hdu.cards)
    return b"\n".join(lines) + b"\n" if lines else b""
