"""Translate the JavaScript regular expressions of the MAST download overlay to Python.

The Portal's download overlay filters files with JavaScript-style regular expressions, so
`--regex` takes the same syntax and must select the same files. Python's `re` differs from
ECMAScript in ways that change results, so a pattern is parsed and rewritten rather than passed
through:

- `\\d`, `\\w`, `\\b` are ASCII-only in JavaScript (Unicode in Python): rewritten to explicit
  ASCII classes. `\\s` is JavaScript's own whitespace set (it has U+FEFF, lacks U+001C..U+001F
  and U+0085).
- `$` matches only at the very end (Python's `$` also before a final newline): `\\Z`. With the
  `m` flag, `^`/`$` and, without `s`, `.` use JavaScript's line terminators
  (LF, CR, U+2028, U+2029), not only LF.
- `[^]` is any character and `[]` matches nothing; class members are always emitted escaped, so
  Python's nested-set syntax and `[]...]` never apply.
- `(?<name>...)` becomes a numbered group and `\\k<name>` refers to it by number. A backreference
  to a group that has not captured matches the empty string (JavaScript) instead of failing
  (Python): `(?(n)\\n)`; to a later or enclosing group it is always empty.
- `\\/` is `/`; `\\u{...}` (with `u`), surrogate pairs `\\uD83D\\uDE00`, `\\cX`, legacy octal
  escapes and identity escapes such as `\\a` (`a` in JavaScript, BEL in Python) are decoded.
- Syntax JavaScript rejects is rejected: a quantifier after an assertion or another quantifier
  (Python would read `a*+` as possessive), `(?P<...>)`, inline flags, and, with `u`, invalid
  escapes and lone braces.

Flags: `i`, `m`, `s`, `u`; `g` and `d` are accepted and have no effect on whether a name
matches; `y` anchors at the start (a fresh RegExp's `lastIndex` is 0); `v` is refused.

The translation is in `re` syntax and compiled with the `regex` package (VERSION0, which reads
that syntax as `re` does) for what `re` lacks: matching that gives up after a time limit
(`search(name, timeout=...)`, used by `selection`) and releases the GIL meanwhile, and
variable-width lookbehind as JavaScript has it. A hostile pattern cannot hang its caller:
backtracking is bounded by that timeout, and compiling, which nothing can interrupt, by
refusing patterns longer than `MAX_PATTERN_LENGTH` or whose counted repeats would expand past
`MAX_COMPLEXITY` (`((a{1000}){1000}){1000}`).

Known remaining differences, all outside MAST's ASCII file names: Unicode case folding under
`i` (Python lets `[a-z]` match U+017F and U+212A), `.` counts code points where JavaScript
without `u` counts UTF-16 units, captures inside a quantified group are not reset between
iterations, and `\\p{...}` is not supported.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

import regex

log = logging.getLogger(__name__)

_Ranges = list[tuple[int, int]]

_MAX_CP = 0x10FFFF
_LINE_TERMINATORS = "\\n\\r\\u2028\\u2029"
_DIGIT: _Ranges = [(0x30, 0x39)]
_WORD: _Ranges = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_SPACE: _Ranges = [
    (0x09, 0x0D),
    (0x20, 0x20),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
    (0xFEFF, 0xFEFF),
]
_SYNTAX_CHARS = frozenset("^$\\.*+?()[]{}|/")
_CONTROL_ESCAPES = {"f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B}
_QUANTIFIER = re.compile(r"\{(\d+)(?:(,)(\d*))?\}")
_GROUP_NAME = re.compile(r"[^\W\d]|\$")
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
_OCTAL = re.compile(r"[0-3][0-7]{0,2}|[4-7][0-7]?")
_VALID_FLAGS = frozenset("gimsuyd")
# `regex` compiles in time (and memory) that grows with the translated pattern, counted repeats
# written out: nested counts multiply. Compiling cannot be interrupted, so what would take more
# than a fraction of a second is refused before it starts; file-name filters need far less.
MAX_COMPLEXITY = 50_000
MAX_PATTERN_LENGTH = 1_000


class JsRegexError(ValueError):
    """The pattern is not a valid JavaScript regular expression, or uses unsupported syntax."""


def _complement(ranges: _Ranges) -> _Ranges:
    out: _Ranges = []
    nxt = 0
    for lo, hi in _merge(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_CP:
        out.append((nxt, _MAX_CP))
    return out


def _merge(ranges: _Ranges) -> _Ranges:
    out: _Ranges = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _esc(cp: int) -> str:
    """One code point, safe both inside and outside a Python character class."""
    ch = chr(cp)
    if ch.isascii() and (ch.isalnum() or ch == "_"):
        return ch
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _class(ranges: _Ranges, negate: bool = False) -> str:
    body = "".join(_esc(lo) if lo == hi else f"{_esc(lo)}-{_esc(hi)}" for lo, hi in _merge(ranges))
    return f"[{'^' if negate else ''}{body}]"


_WORD_CLASS = _class(_WORD)
_NOT_WORD_CLASS = _class(_WORD, negate=True)
_BOUNDARY = f"(?:(?<={_WORD_CLASS})(?!{_WORD_CLASS})|(?<!{_WORD_CLASS})(?={_WORD_CLASS}))"
_NOT_BOUNDARY = f"(?:(?<={_WORD_CLASS})(?={_WORD_CLASS})|(?<!{_WORD_CLASS})(?!{_WORD_CLASS}))"


def parse_literal(source: str) -> tuple[str, str]:
    """Split `/pattern/flags` into its parts; any other text is a pattern without flags."""
    end = source.rfind("/")
    tail = source[end + 1 :]
    if source.startswith("/") and end > 0 and (not tail or (tail.isascii() and tail.isalpha())):
        return source[1:end], tail
    return source, ""


def _check_flags(flags: str) -> None:
    for f in flags:
        if f == "v":
            raise JsRegexError("the v (unicodeSets) flag is not supported")
        if f not in _VALID_FLAGS:
            raise JsRegexError(f"invalid flag {f!r}; valid flags: d, g, i, m, s, u, y")
    if len(set(flags)) != len(flags):
        raise JsRegexError(f"duplicate flag in {flags!r}")


def _scan_groups(pattern: str) -> list[str | None]:
    """Capturing groups in order, with their names (None when unnamed)."""
    groups: list[str | None] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            if not pattern.startswith("?", i + 1):
                groups.append(None)
            elif pattern.startswith("?<", i + 1) and pattern[i + 3 : i + 4] not in ("=", "!"):
                close = pattern.find(">", i + 3)
                groups.append(pattern[i + 3 : close] if close > 0 else "")
        i += 1
    return groups


class _Translator:
    def __init__(self, pattern: str, flags: str) -> None:
        self.p = pattern
        self.i = 0
        self.unicode = "u" in flags
        self.dotall = "s" in flags
        self.multiline = "m" in flags
        self.out: list[str] = []
        groups = _scan_groups(pattern)
        self.ngroups = len(groups)
        self.names: dict[str, int] = {}
        for index, name in enumerate(groups, start=1):
            if name is None:
                continue
            if not name or not all(
                _GROUP_NAME.fullmatch(ch) or (k > 0 and ch.isdigit()) for k, ch in enumerate(name)
            ):
                raise JsRegexError(f"invalid capture group name {name!r}")
            if name in self.names:
                raise JsRegexError(f"duplicate capture group name {name!r}")
            self.names[name] = index
        self.next_group = 0
        self.closed: set[int] = set()
        # (kind, group number) for each open parenthesis; kind decides what may be quantified.
        self.stack: list[tuple[str, int]] = []
        self.quantifiable = False
        # What compiling will cost (see `MAX_COMPLEXITY`): the translated text, with every
        # repeated atom counted as often as `regex` writes it out. One total per open group.
        self.costs: list[int] = [0]
        self.last_cost = 0

    def error(self, message: str) -> JsRegexError:
        return JsRegexError(f"{message} at position {self.i}")

    def peek(self, k: int = 0) -> str:
        return self.p[self.i + k : self.i + k + 1]

    def translate(self) -> str:
        while self.i < len(self.p):
            self.step()
        if self.stack:
            raise self.error("missing )")
        return "".join(self.out)

    @property
    def cost(self) -> int:
        return self.costs[0]

    def emit(self, text: str, quantifiable: bool, cost: int | None = None) -> None:
        self.out.append(text)
        self.quantifiable = quantifiable
        self.last_cost = len(text) if cost is None else cost
        self.costs[-1] += self.last_cost

    def step(self) -> None:
        c = self.p[self.i]
        if c == "\\":
            self.i += 1
            self.escape()
        elif c == "[":
            self.i += 1
            self.char_class()
        elif c == "(":
            self.open_group()
        elif c == ")":
            self.close_group()
        elif c == "|":
            self.i += 1
            self.emit("|", False)
        elif c == "^":
            self.i += 1
            self.emit(f"(?:(?<=[{_LINE_TERMINATORS}])|\\A)" if self.multiline else "\\A", False)
        elif c == "$":
            self.i += 1
            self.emit(f"(?=[{_LINE_TERMINATORS}]|\\Z)" if self.multiline else "\\Z", False)
        elif c == ".":
            self.i += 1
            self.emit("(?s:.)" if self.dotall else f"[^{_LINE_TERMINATORS}]", True)
        elif c in "*+?":
            self.quantifier(c, 1, 2 if c == "+" else 1)
        elif c == "{":
            m = _QUANTIFIER.match(self.p, self.i)
            if m:
                lo, comma, hi = m.group(1), m.group(2), m.group(3)
                if hi and int(hi) < int(lo):
                    raise self.error("numbers out of order in {} quantifier")
                copies = int(hi) if hi else int(lo) + (1 if comma else 0)
                text = f"{{{int(lo)}{comma or ''}{int(hi) if hi else ''}}}"
                self.quantifier(text, len(m[0]), copies)
            elif self.unicode:
                raise self.error("lone quantifier brackets")
            else:
                self.i += 1
                self.emit("\\{", True)
        elif c in "}]":
            if self.unicode:
                raise self.error(f"lone {c!r}")
            self.i += 1
            self.emit(re.escape(c), True)
        else:
            self.i += 1
            self.emit(_esc(ord(c)), True)

    def quantifier(self, text: str, length: int, copies: int) -> None:
        if not self.quantifiable:
            raise self.error("nothing to repeat")
        # `regex` expands a counted repeat into copies of its atom when compiling: nested
        # counts multiply (`((a{1000}){1000}){1000}` would take minutes and gigabytes).
        self.costs[-1] += self.last_cost * (max(copies, 1) - 1)
        if self.costs[-1] > MAX_COMPLEXITY:
            raise self.error(_too_complex(self.costs[-1]))
        self.i += length
        if self.peek() == "?":
            self.i += 1
            text += "?"
        self.emit(text, False)

    def open_group(self) -> None:
        rest = self.p[self.i + 1 : self.i + 4]
        if not rest.startswith("?"):
            self.i += 1
            self.next_group += 1
            self.stack.append(("capture", self.next_group))
            self.open_cost("(")
        elif rest.startswith("?:"):
            self.i += 3
            self.stack.append(("group", 0))
            self.open_cost("(?:")
        elif rest.startswith(("?=", "?!")):
            self.i += 3
            self.stack.append(("lookahead", 0))
            self.open_cost("(" + rest[:2])
        elif rest in ("?<=", "?<!"):
            self.i += 4
            self.stack.append(("lookbehind", 0))
            self.open_cost("(" + rest)
        elif rest.startswith("?<"):
            close = self.p.find(">", self.i)
            if close < 0:
                raise self.error("unterminated group name")
            self.i = close + 1
            self.next_group += 1
            self.stack.append(("capture", self.next_group))
            self.open_cost("(")
        else:
            raise self.error("invalid group")

    def open_cost(self, text: str) -> None:
        self.costs.append(0)
        self.emit(text, False)

    def close_group(self) -> None:
        if not self.stack:
            raise self.error("unmatched )")
        self.i += 1
        kind, number = self.stack.pop()
        if kind == "capture":
            self.closed.add(number)
        quantifiable = kind in ("capture", "group") or (kind == "lookahead" and not self.unicode)
        # A quantifier after `)` repeats the whole group.
        self.emit(")", quantifiable, cost=self.costs.pop() + 1)

    def backreference(self, number: int) -> None:
        if number in self.closed:
            self.emit(f"(?({number})(?:\\{number}))", True)
        else:
            # A group that is still open or not reached yet has captured nothing here.
            self.emit("(?:)", True)

    def identity(self, ch: str, in_class: bool) -> int:
        if self.unicode and ch not in _SYNTAX_CHARS and not (in_class and ch == "-"):
            raise self.error(f"invalid escape \\{ch}")
        self.i += 1
        return ord(ch)

    def escape(self) -> None:
        if self.i >= len(self.p):
            raise self.error("\\ at end of pattern")
        c = self.p[self.i]
        if c in "dDwWsS":
            self.i += 1
            base = {"d": _DIGIT, "w": _WORD, "s": _SPACE}[c.lower()]
            self.emit(_class(base, negate=c.isupper()), True)
        elif c in "bB":
            self.i += 1
            self.emit(_BOUNDARY if c == "b" else _NOT_BOUNDARY, False)
        elif c.isdigit() and c != "0":
            m = re.compile(r"\d+").match(self.p, self.i)
            assert m is not None
            number = int(m[0])
            if number <= self.ngroups:
                self.i = m.end()
                self.backreference(number)
            elif self.unicode:
                raise self.error(f"invalid backreference \\{m[0]}")
            else:
                self.emit(_esc(self.legacy_octal_or_identity()), True)
        elif c == "k" and (self.unicode or self.names):
            m = re.compile(r"k<([^>]*)>").match(self.p, self.i)
            if not m or m[1] not in self.names:
                raise self.error("invalid named reference")
            self.i = m.end()
            self.backreference(self.names[m[1]])
        elif c == "c" and not self.control_follows(in_class=False):
            if self.unicode:
                raise self.error("invalid escape \\c")
            # Annex B: a backslash not starting a valid escape is itself; `c` is read next.
            self.emit("\\\\", True)
        else:
            self.emit(_esc(self.character_escape(in_class=False)), True)

    def control_follows(self, in_class: bool) -> bool:
        nxt = self.peek(1)
        if nxt.isascii() and nxt.isalpha():
            return True
        return in_class and not self.unicode and (nxt.isdigit() or nxt == "_")

    def legacy_octal_or_identity(self) -> int:
        m = _OCTAL.match(self.p, self.i)
        if m:
            self.i = m.end()
            return int(m[0], 8)
        return self.identity(self.p[self.i], in_class=False)

    def character_escape(self, in_class: bool) -> int:
        """Decode an escape that stands for one character; self.i is just after the backslash."""
        c = self.p[self.i]
        if c in _CONTROL_ESCAPES:
            self.i += 1
            return _CONTROL_ESCAPES[c]
        if c == "0" and not self.peek(1).isdigit():
            self.i += 1
            return 0
        if c.isdigit():
            if self.unicode:
                raise self.error(f"invalid escape \\{c}")
            return self.legacy_octal_or_identity()
        if c == "c":
            if not self.control_follows(in_class):
                raise self.error("invalid escape \\c")
            self.i += 2
            return ord(self.p[self.i - 1]) % 32
        if c == "x":
            m = _HEX2.match(self.p, self.i + 1)
            if m:
                self.i = m.end()
                return int(m[0], 16)
            return self.identity(c, in_class)
        if c == "u":
            return self.unicode_escape(in_class)
        if c in "pP" and self.unicode:
            raise self.error("Unicode property escapes (\\p{...}) are not supported")
        return self.identity(c, in_class)

    def unicode_escape(self, in_class: bool) -> int:
        if self.unicode and self.peek(1) == "{":
            m = re.compile(r"u\{([0-9A-Fa-f]+)\}").match(self.p, self.i)
            if not m or int(m[1], 16) > _MAX_CP:
                raise self.error("invalid Unicode escape")
            self.i = m.end()
            return int(m[1], 16)
        m = _HEX4.match(self.p, self.i + 1)
        if not m:
            return self.identity("u", in_class)
        self.i = m.end()
        unit = int(m[0], 16)
        if 0xD800 <= unit <= 0xDBFF and self.p.startswith("\\u", self.i):
            low = _HEX4.match(self.p, self.i + 2)
            if low and 0xDC00 <= int(low[0], 16) <= 0xDFFF:
                self.i = low.end()
                return 0x10000 + ((unit - 0xD800) << 10) + (int(low[0], 16) - 0xDC00)
        return unit

    def class_atom(self) -> tuple[int, int] | _Ranges:
        """One class member: a single code point as (cp, cp), or a set such as `\\d`."""
        c = self.p[self.i]
        if c != "\\":
            self.i += 1
            return (ord(c), ord(c))
        self.i += 1
        if self.i >= len(self.p):
            raise self.error("\\ at end of pattern")
        c = self.p[self.i]
        if c in "dDwWsS":
            self.i += 1
            base = {"d": _DIGIT, "w": _WORD, "s": _SPACE}[c.lower()]
            return _complement(base) if c.isupper() else list(base)
        if c == "b":
            self.i += 1
            return (0x08, 0x08)
        if c == "-":
            self.i += 1
            return (0x2D, 0x2D)
        if c == "c" and not self.control_follows(in_class=True):
            if self.unicode:
                raise self.error("invalid escape \\c")
            return (0x5C, 0x5C)
        if c == "k" and self.unicode:
            raise self.error("invalid escape \\k in class")
        cp = self.character_escape(in_class=True)
        return (cp, cp)

    def char_class(self) -> None:
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        ranges: _Ranges = []
        while True:
            if self.i >= len(self.p):
                raise self.error("missing ] for character class")
            if self.p[self.i] == "]":
                self.i += 1
                break
            first = self.class_atom()
            if self.peek() == "-" and self.peek(1) not in ("", "]"):
                self.i += 1
                last = self.class_atom()
                if isinstance(first, tuple) and isinstance(last, tuple):
                    if first[0] > last[0]:
                        raise self.error("range out of order in character class")
                    ranges.append((first[0], last[0]))
                    continue
                if self.unicode:
                    raise self.error("invalid character class range")
                ranges.append((0x2D, 0x2D))
                for atom in (first, last):
                    ranges.extend([atom] if isinstance(atom, tuple) else atom)
                continue
            ranges.extend([first] if isinstance(first, tuple) else first)
        if not ranges:
            self.emit("(?s:.)" if negate else "(?!)", True)
        else:
            self.emit(_class(ranges, negate), True)


def _too_complex(cost: int) -> str:
    return (
        f"pattern too complex: it expands to {cost:,} characters when compiled "
        f"(limit {MAX_COMPLEXITY:,}); use fewer or smaller repetitions"
    )


def _translate(pattern: str, flags: str) -> tuple[str, int, int]:
    _check_flags(flags)
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise JsRegexError(
            f"pattern is {len(pattern):,} characters long (limit {MAX_PATTERN_LENGTH:,})"
        )
    translator = _Translator(pattern, flags)
    body = translator.translate()
    if translator.cost > MAX_COMPLEXITY:
        raise JsRegexError(_too_complex(translator.cost))
    if "y" in flags:
        body = f"\\A(?:{body})"
    return body, re.IGNORECASE if "i" in flags else 0, translator.cost


def translate(pattern: str, flags: str = "") -> tuple[str, int]:
    """The Python pattern and `re` flags equivalent to JavaScript `new RegExp(pattern, flags)`."""
    body, re_flags, _ = _translate(pattern, flags)
    return body, re_flags


@lru_cache(maxsize=256)
def _translated(source: str) -> tuple[str, int, int]:
    pattern, flags = parse_literal(source)
    return _translate(pattern, flags)


def complexity(source: str) -> int:
    """What compiling `pattern` or `/pattern/flags` costs, in the units of `MAX_COMPLEXITY`;
    a selection keeps the sum of its patterns' under that limit too."""
    return _translated(source)[2]


@lru_cache(maxsize=256)
def compile_js(source: str) -> Any:
    """Compile `pattern` or `/pattern/flags` with `regex`; `.search(name, timeout=SECONDS)`
    answers JavaScript's `test()`, and raises `TimeoutError` past the time given."""
    body, re_flags, _ = _translated(source)
    flags = regex.VERSION0 | (regex.IGNORECASE if re_flags & re.IGNORECASE else 0)
    try:
        return regex.compile(body, flags)
    except regex.error as exc:
        raise JsRegexError(exc.msg) from exc
    except (OverflowError, RecursionError) as exc:
        raise JsRegexError(str(exc) or "pattern too complex") from exc
