"""Header texts kept in memory (`headers.HeaderTexts`): those read, and those built ahead.

Texts a reader has had are kept least recently used first within `read_limit` bytes. Texts
built in the background and not read yet are kept apart, within `ahead_limit` bytes, and never
dropped to make room: a `grep -r` is slower than the builds ahead of it, and a text dropped
before the reader reaches it is built a second time, one product at a time at the reader's
pace (a program of 4,995 FITS products has ~100 MB of header text: with one LRU of 32 MiB,
the grep of the whole program rebuilt most of them, docs/performance.md "Headers"). The
builders wait while the texts ahead fill their room (`ahead_full`). Pure: no I/O, no trio.
"""

from __future__ import annotations

from collections import OrderedDict

Kept = tuple[str, bytes]  # (version identity, text)


class TextMemory:
    def __init__(self, read_limit: int, ahead_limit: int) -> None:
        self.read_limit = read_limit
        self.ahead_limit = ahead_limit
        self._read: OrderedDict[str, Kept] = OrderedDict()
        self._read_bytes = 0
        self._ahead: dict[str, Kept] = {}
        self._ahead_bytes = 0

    def get(self, uri: str) -> Kept | None:
        return self._read.get(uri) or self._ahead.get(uri)

    def put(self, uri: str, identity: str, text: bytes, *, ahead: bool) -> None:
        """Keep a text just built (`ahead`: by a background build, for no reader yet)."""
        self.drop(uri)
        if ahead:
            if len(text) <= self.ahead_limit // 4:
                self._ahead[uri] = (identity, text)
                self._ahead_bytes += len(text)
            return
        if len(text) <= self.read_limit // 4:
            self._read[uri] = (identity, text)
            self._read_bytes += len(text)
            self._shrink()

    def taken(self, uri: str) -> None:
        """A reader has had the text: from now on it is kept as a read one."""
        kept = self._ahead.pop(uri, None)
        if kept is not None:
            self._ahead_bytes -= len(kept[1])
            self.put(uri, *kept, ahead=False)
        elif uri in self._read:
            self._read.move_to_end(uri)

    def drop(self, uri: str) -> None:
        kept = self._read.pop(uri, None)
        if kept is not None:
            self._read_bytes -= len(kept[1])
        kept = self._ahead.pop(uri, None)
        if kept is not None:
            self._ahead_bytes -= len(kept[1])

    @property
    def ahead_full(self) -> bool:
        return self._ahead_bytes >= self.ahead_limit

    def _shrink(self) -> None:
        while self._read_bytes > self.read_limit:
            _, (_, dropped) = self._read.popitem(last=False)
            self._read_bytes -= len(dropped)

    def stats(self) -> dict[str, int]:
        return {
            "texts": len(self._read) + len(self._ahead),
            "text_bytes": self._read_bytes + self._ahead_bytes,
            "texts_ahead": len(self._ahead),
        }
