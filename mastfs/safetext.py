"""Pure: text from the archive made safe to keep, store and print.

A string from the archive may hold anything JSON can: NUL, terminal escape sequences (ESC, CSI),
lone surrogates (`"\\ud800"`, which no file name, log or terminal can encode). `clean` gives the
same text with every control character (C0, DEL, C1) and every surrogate replaced: whitespace
controls by a space, the rest by U+FFFD, so that something visibly took their place. The result
is valid Unicode that encodes as UTF-8, holds no NUL, and cannot move a terminal's cursor or change
its colours. Pure: no I/O.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"
_WHITESPACE = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85")


def _unsafe(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF


def clean(text: str, *, keep_newlines: bool = False) -> str:
    """`text` without control characters or surrogates; see the module docstring.

    `keep_newlines` keeps `\\n` (a log record with a traceback); every other control goes.
    """
    # Almost every string is printable: one C-speed check, no copy.
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if not _unsafe(ch) or (keep_newlines and ch == "\n"):
            out.append(ch)
        elif ch in _WHITESPACE:
            out.append(" ")
        else:
            out.append(REPLACEMENT)
    return "".join(out)
