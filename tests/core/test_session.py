"""The query session shared by `mastfs mount` and `mastfs ls`, against the simulator, no FUSE."""

from __future__ import annotations

from pathlib import Path

import pytest

from mastfs.archive import Query
from mastfs.selection import Selection
from mastfs.session import Session, SessionError
from mastfs.sim.catalog import AUTHORIZED_TOKEN, TOKENS
from tests.support.session import Recorder, run_session

ADA = TOKENS[AUTHORIZED_TOKEN].display_name


def session(
    sim_url: str,
    cache: Path,
    program: str,
    token: str | None = None,
    selection: Selection | None = None,
) -> tuple[Session, Recorder]:
    return run_session(sim_url, cache, Query(programs=(program,)), token=token, selection=selection)


def test_anonymous_session_cannot_read_exclusive_access(sim_url: str, tmp_path: Path) -> None:
    s, reporter = session(sim_url, tmp_path, "6543")
    assert s.user is None and s.readable == frozenset()
    assert not s.result.from_cache
    assert reporter.progress_lines and not reporter.warnings
    assert s.state.snapshot.summary.unreadable_files > 0
    assert s.unreadable_warning == (
        f"{s.state.snapshot.summary.unreadable_files} selected exclusive-access files cannot be "
        "read without an authorized MAST token"
    )


def test_authorized_session_reads_its_program(sim_url: str, tmp_path: Path) -> None:
    s, _ = session(sim_url, tmp_path, "6543", token=AUTHORIZED_TOKEN)
    assert s.user is not None and s.user.display_name == ADA
    assert s.readable == {"6543"}
    assert s.unreadable_warning is None


def test_unmatched_filter_values_are_named(sim_url: str, tmp_path: Path) -> None:
    typo = Selection.build(groups=("CALL",))
    s, _ = session(sim_url, tmp_path, "2734", selection=typo)
    assert s.state.snapshot.selected == []
    assert s.unmatched_warnings() == ["group 'CALL' matches no file of program 2734"]


@pytest.mark.filterwarnings("ignore:Query returned no results")
def test_archive_errors_are_one_line(sim_url: str, tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="no observations match program 99999"):
        session(sim_url, tmp_path, "99999")
