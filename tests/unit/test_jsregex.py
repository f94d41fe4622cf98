"""JavaScript regular expressions (the download overlay's syntax) translated to Python's `re`.

The expected answers below are JavaScript's (`new RegExp(pattern, flags).test(subject)`); when
Node.js is installed, `test_agrees_with_node` also asks a real JavaScript engine, for the table
and for a few thousand random patterns.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess

import pytest

from mastfs.jsregex import JsRegexError, compile_js, parse_literal, translate

# (pattern, flags, subject, JavaScript's answer)
CASES: list[tuple[str, str, str, bool]] = [
    (r"\d", "", "٣", False),  # JS \d is ASCII-only; Python's is Unicode
    (r"\d", "", "3", True),
    (r"^\w+$", "", "straße", False),
    (r"\bcal\b", "", "x cal y", True),
    (r"\bcal\b", "", "x_cal_y", False),
    (r"\bé", "", " é", False),  # é is not a JS word character, so no boundary before it
    (r"\s", "", "\ufeff", True),
    (r"\s", "", "\x1c", False),
    (r"\s", "", "\x85", False),
    (r"fits$", "", "x.fits\n", False),  # Python's $ would match before the newline
    (r"fits$", "m", "x.fits\n", True),
    (r"fits$", "m", "x.fits\rmore", True),
    (r"^more", "m", "x.fits\u2028more", True),
    (r"^more", "", "x.fits\nmore", False),
    (r"a.b", "", "a\rb", False),
    (r"a.b", "", "a\u2029b", False),
    (r"a.b", "s", "a\nb", True),
    (r"[^]", "", "\n", True),
    (r"[]", "", "anything", False),
    (r"[]a]", "", "a]", False),  # [] matches nothing, so this never matches
    (r"[]a]", "", "]", False),
    (r"(?<ds>jw\d+)_\k<ds>", "", "jw1_jw1", True),
    (r"(?<ds>jw\d+)_\k<ds>", "", "jw1_jw2", False),
    (r"(a)|b\1", "", "b", True),  # \1 of a group that did not take part matches ""
    (r"(a\1)", "", "a", True),
    (r"\1(b)", "", "b", True),  # a forward reference matches ""
    (r"\2(b)", "", "\x02b", True),  # no group 2: a legacy octal escape
    (r"mast:JWST\/product", "", "mast:JWST/product", True),
    (r"\u{1F600}", "u", "😀", True),
    (r"\u{1F600}", "", "u" * 1_000, False),
    (r"\uD83D\uDE00", "", "😀", True),
    (r"\cJ", "", "\n", True),
    (r"\c", "", "\\c", True),
    (r"\a", "", "a", True),  # identity escape; Python's \a is BEL
    (r"\Z", "", "Z", True),
    (r"\012", "", "\n", True),
    (r"[\b]", "", "\x08", True),
    (r"[a-c-e]", "", "-", True),
    (r"[a-c-e]", "", "d", False),
    (r"[\d-z]", "", "-", True),
    (r"a{,2}", "", "a{,2}", True),
    (r"a{,2}", "", "aa", False),
    (r"x{", "", "x{", True),
    (r"(?=a)*b", "", "b", True),
    (r"(?<=_)cal", "", "x_cal", True),
    (r"(?<!_)cal", "", "x_cal", False),
    (r"CAL", "i", "x_cal.fits", True),
    (r"é", "i", "É", True),
    (r"^jw\d{5}-o\d{3}", "", "jw02734-o002_t002_niriss_x1dints.fits", True),
    (r"uncal|rate", "y", "x_rate.fits", False),  # sticky: anchored at index 0
    (r"jw|x", "y", "jw0.fits", True),
]

INVALID = [
    "(",
    ")",
    "[a",
    "a**",
    "a*+",  # possessive in Python 3.11, an error in JavaScript
    "a{2}{3}",
    "^*",
    r"\b+",
    "(?<=a)*",
    "[z-a]",
    "a{3,1}",
    "(?P<x>a)",
    "(?i)a",
    "(?<a>x)(?<a>y)",
    r"\k<nope>(?<a>x)",
    "\\",
]
INVALID_UNICODE = [r"\e", r"\p{L}", "x{", "]", r"\1", r"\-", r"[\d-z]", r"\u{110000}"]


@pytest.mark.parametrize(("pattern", "flags", "subject", "expected"), CASES)
def test_javascript_semantics(pattern: str, flags: str, subject: str, expected: bool) -> None:
    assert (compile_js(f"/{pattern}/{flags}").search(subject) is not None) is expected


@pytest.mark.parametrize("pattern", INVALID)
def test_invalid_patterns(pattern: str) -> None:
    with pytest.raises(JsRegexError):
        compile_js(f"/{pattern}/")


@pytest.mark.parametrize("pattern", INVALID_UNICODE)
def test_invalid_in_unicode_mode_only(pattern: str) -> None:
    with pytest.raises(JsRegexError):
        compile_js(f"/{pattern}/u")
    if pattern not in (r"\p{L}", r"\u{110000}"):
        compile_js(f"/{pattern}/")


@pytest.mark.parametrize(
    ("source", "parts"),
    [
        ("/_cal/i", ("_cal", "i")),
        ("/a/b/", ("a/b", "")),
        ("_cal", ("_cal", "")),
        ("/_cal", ("/_cal", "")),
        ("/", ("/", "")),
        ("//", ("", "")),
        ("/x/1", ("/x/1", "")),
    ],
)
def test_parse_literal(source: str, parts: tuple[str, str]) -> None:
    assert parse_literal(source) == parts


@pytest.mark.parametrize("flags", ["q", "ii", "v"])
def test_bad_flags(flags: str) -> None:
    with pytest.raises(JsRegexError):
        translate("a", flags)


def test_translation_shape() -> None:
    body, flags = translate(r"\d$", "i")
    assert body == r"[0-9]\Z"
    assert flags != 0
    assert translate("(?<name>a)", "")[0] == "(a)"


# Tokens for random patterns: every construct the translator rewrites, plus plain text.
_TOKENS = [
    "a",
    "b",
    "_",
    "-",
    ".",
    "^",
    "$",
    "*",
    "+",
    "?",
    "{2}",
    "{1,}",
    "{,1}",
    "{",
    "}",
    "(",
    ")",
    "(?:",
    "(?=",
    "(?!",
    "(?<=",
    "(?<!",
    "(?<g>",
    "\\k<g>",
    "|",
    "[",
    "]",
    "[^",
    "\\d",
    "\\w",
    "\\s",
    "\\b",
    "\\B",
    "\\1",
    "\\2",
    "\\0",
    "\\n",
    "\\/",
    "\\.",
    "\\-",
    "\\x41",
    "\\u0041",
    "\\c",
    "\\cA",
    "0",
    "1",
    "A",
    "\\",
    "é",
    " ",
]
_NODE = r"""
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(cases.map(([p, f, s]) => {
  try { return new RegExp(p, f).test(s); } catch (e) { return 'error'; }
})));
"""


def _python(pattern: str, flags: str, subject: str) -> bool | str:
    try:
        return compile_js(f"/{pattern}/{flags}").search(subject) is not None
    except JsRegexError as exc:
        # Python needs fixed-width lookbehind; JavaScript does not (a documented difference).
        return "lookbehind" if "look-behind" in str(exc) else "error"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_agrees_with_node() -> None:
    rng = random.Random(2734)
    cases = [(p, f, s) for p, f, s, _ in CASES]
    cases += [(p, "", "x") for p in INVALID] + [(p, "u", "x") for p in INVALID_UNICODE]
    for _ in range(1500):
        pattern = "".join(rng.choice(_TOKENS) for _ in range(rng.randint(1, 7)))
        flags = rng.choice(["", "i", "m", "s", "u", "ims", "y"])
        for _ in range(3):
            subject = "".join(rng.choice("ab_-A B\n0é.1") for _ in range(rng.randint(0, 6)))
            cases.append((pattern, flags, subject))
    run = subprocess.run(
        ["node", "-e", _NODE],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    answers = json.loads(run.stdout)
    mismatches = [
        (p, f, s, want, got)
        for (p, f, s), want in zip(cases, answers, strict=True)
        if (got := _python(p, f, s)) != want and got != "lookbehind" and "\\p" not in p
    ]
    assert mismatches == []
