"""`--data-cache` parsing and the CVMFS-style choice of a cache: groups, fail-over, reset."""

from __future__ import annotations

import random

import pytest

from mastfs.datacache import DIRECT, DataCacheError, TierChoice, parse_data_cache


def test_groups_members_and_direct() -> None:
    spec = parse_data_cache(" http://A:8080/ | https://b.example/tier ; http://c ;DIRECT")
    assert spec.groups == (("http://a:8080", "https://b.example/tier"), ("http://c",))
    assert spec.direct
    assert not parse_data_cache("http://a").direct
    assert parse_data_cache("http://a;direct").direct


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", "no cache URL"),
        ("DIRECT", "no cache URL"),
        ("http://a;;DIRECT", "empty cache URL"),
        ("http://a|", "empty cache URL"),
        ("ftp://a", "'ftp://a'"),
        ("a:8080", "'a:8080'"),
        ("http://user:pw@a", "user name or password"),
        ("http://a?x=1", "query or fragment"),
        ("http://a:99999", "bad port"),
        ("DIRECT;http://a", "DIRECT must come last"),
        ("http://a|DIRECT", "DIRECT must be a group of its own"),
        ("http://a;http://A/", "listed twice"),
    ],
)
def test_bad_values_are_named(text: str, names: str) -> None:
    with pytest.raises(DataCacheError, match="--data-cache") as info:
        parse_data_cache(text)
    assert names in str(info.value)


def test_nodes_spread_over_a_group_and_keep_their_pick() -> None:
    spec = parse_data_cache("http://a|http://b|http://c;DIRECT")
    firsts = {TierChoice(spec, rng=random.Random(seed)).first_choice() for seed in range(40)}
    assert firsts == {"http://a", "http://b", "http://c"}
    choice = TierChoice(spec, rng=random.Random(1))
    assert len({choice.order(t)[0] for t in range(10)}) == 1


def test_failover_within_group_then_next_group_then_direct_then_back() -> None:
    spec = parse_data_cache("http://a|http://b;http://c;DIRECT")
    choice = TierChoice(spec, reset_after=300.0, rng=random.Random(0))
    first = choice.first_choice()
    other = ({"http://a", "http://b"} - {first}).pop()
    assert choice.order(0.0) == [first, other, "http://c", DIRECT]
    choice.failed(first, 10.0)
    assert choice.order(11.0) == [other, "http://c", DIRECT]
    choice.failed(other, 20.0)
    assert choice.order(21.0) == ["http://c", DIRECT]
    choice.failed("http://c", 30.0)
    assert choice.order(31.0) == [DIRECT]
    # The reset runs from the first failure: the first choice comes back.
    assert choice.order(309.0) == [DIRECT]
    assert choice.order(310.0) == [first, other, "http://c", DIRECT]


def test_without_direct_every_cache_is_tried_again_rather_than_none() -> None:
    choice = TierChoice(parse_data_cache("http://a;http://b"), rng=random.Random(0))
    choice.failed("http://a", 0.0)
    choice.failed("http://b", 0.0)
    assert choice.order(1.0) == ["http://a", "http://b"]
    choice.failed(DIRECT, 1.0)  # not a cache: ignored
    assert DIRECT not in choice.failed_at
