"""Regexes cannot hang their caller: compiling is bounded by size, matching by a time budget.

The catastrophic pattern `/^(\\w|\\w)*$/` backtracks 2^n ways on a name of n word characters
followed by one that is not (`-`, `.`): with Python's `re` one search of a MAST file name takes
longer than the universe has existed, with the GIL held. Budgets here are small, so the tests
are quick; none measures time.
"""

from __future__ import annotations

import pytest

from mastfs.jsregex import MAX_COMPLEXITY, MAX_PATTERN_LENGTH, JsRegexError, compile_js
from mastfs.model import Product
from mastfs.selection import (
    MAX_PATTERNS,
    RegexTooSlow,
    Selection,
    SelectionError,
    select,
    unmatched_values,
)
from tests.support.sample_products import jwst

CATASTROPHIC = r"/^(\w|\w)*$/"
NAMES = [
    "jw02734001001_02101_00001-seg001_nis_rateints.fits",
    "jw02734-o001_t001_niriss_clear-gr700xd-substrip256_x1dints.fits",
    "jw02734_20220630t163421_pool.csv",
]


def products() -> list[Product]:
    return [jwst(name, "jw02734001001_02101_00001-seg001_nis", 2, "CAL") for name in NAMES]


@pytest.mark.parametrize("option", ["regex", "exclude_regex"])
def test_catastrophic_regex_is_stopped_by_the_budget(option: str) -> None:
    sel = Selection.build(**{option: CATASTROPHIC})
    with pytest.raises(RegexTooSlow) as info:
        select(products(), sel, budget=0.05)
    assert repr(CATASTROPHIC) in str(info.value)
    assert "too long" in str(info.value)
    # A selection error: the xattr answers EINVAL, the CLI prints one line.
    assert isinstance(info.value, SelectionError)


def test_unmatched_values_is_budgeted_too() -> None:
    with pytest.raises(RegexTooSlow):
        unmatched_values(products(), Selection.build(regex=CATASTROPHIC), budget=0.05)


def test_matches_alone_has_a_budget() -> None:
    with pytest.raises(RegexTooSlow):
        Selection.build(regex=CATASTROPHIC).matches(products()[0])


def test_ordinary_regexes_select_as_before() -> None:
    sel = Selection.build(regex="/X1DINTS|pool/i", exclude_regex=r"\.csv$")
    assert [p.productFilename for p in select(products(), sel)] == [NAMES[1]]
    assert unmatched_values(products(), Selection.build(regex="nothing")) == ["regex 'nothing'"]


@pytest.mark.parametrize(
    "pattern",
    [
        "((a{1000}){1000}){1000}",  # regex writes counted repeats out: nested counts multiply
        "(?:(?:x{300}){300})",
        "(a{20}){5000}",
    ],
)
def test_patterns_that_would_compile_for_ever_are_refused(pattern: str) -> None:
    with pytest.raises(JsRegexError, match="too complex"):
        compile_js(pattern)


def test_long_patterns_are_refused() -> None:
    with pytest.raises(JsRegexError, match="characters long"):
        compile_js("a" * (MAX_PATTERN_LENGTH + 1))
    compile_js("a" * MAX_PATTERN_LENGTH)


def test_a_selections_patterns_share_one_compile_limit() -> None:
    # Each alone is allowed; together they are not.
    one = "(?:" + "x" * 90 + f"){{{MAX_COMPLEXITY // 100}}}"
    compile_js(one)
    with pytest.raises(SelectionError, match="too complex together"):
        Selection.build(regex=[one, one + "y"], exclude_regex=[one + "z"])


def test_too_many_patterns_are_refused() -> None:
    with pytest.raises(SelectionError, match="too many regexes"):
        Selection.build(regex=[f"a{i}" for i in range(MAX_PATTERNS + 1)])


def test_variable_width_lookbehind_works_as_in_javascript() -> None:
    assert compile_js("/(?<=_s\\d+_)x1d/").search("jw_s00001_x1d.fits") is not None
