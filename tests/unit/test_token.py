"""What a token file may hold, and the one line that says why it cannot be used (issue 12).

The error line names the file and the fault, never the content: a second line may be a password,
and error lines end up in logs, terminals and bug reports.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mastfs.token import MAX_TOKEN_LENGTH, TokenError, mode_warning, parse_token

SOURCE = "token file /home/ada/.mast-token"
TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "data",
    [
        TOKEN.encode(),
        f"{TOKEN}\n".encode(),
        f"  {TOKEN}\r\n".encode(),
        f"\n\n\t{TOKEN}\n\n\n".encode(),
        b"x" * MAX_TOKEN_LENGTH,
        b"A.b-c_d~e+f/g=h",  # base64 and JWT-ish punctuation is printable ASCII
    ],
)
def test_one_token_with_surrounding_whitespace_is_accepted(data: bytes) -> None:
    assert parse_token(data, SOURCE) == data.strip().decode()


SECRET = "hunter2-the-password"


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (b"", "is empty"),
        (b"  \n\t\r\n ", "is empty"),
        (f"{TOKEN}\n{SECRET}\n".encode(), "more than one line"),
        (f"{TOKEN}\r{SECRET}".encode(), "more than one line"),
        (f"{SECRET}\n\n{TOKEN}".encode(), "more than one line"),
        (f"{TOKEN} {SECRET}".encode(), "whitespace inside"),
        (f"token={TOKEN}\t{SECRET}".encode(), "whitespace inside"),
        (f"{TOKEN}\x00{SECRET}".encode(), "printable ASCII"),
        (f"{TOKEN}\x1b[2J{SECRET}".encode(), "printable ASCII"),
        ("\ufeff".encode() + SECRET.encode(), "printable ASCII"),  # a byte-order mark
        (f"{SECRET}é".encode(), "printable ASCII"),
        (b"\x89PNG\r\n\x1a\n" + SECRET.encode(), "more than one line"),
        (bytes(range(0x80, 0x100)) + SECRET.encode(), "printable ASCII"),
        ((SECRET * 100).encode(), f"at most {MAX_TOKEN_LENGTH}"),
    ],
)
def test_anything_else_is_one_line_naming_the_file_never_its_content(
    data: bytes, fault: str
) -> None:
    with pytest.raises(TokenError) as info:
        parse_token(data, SOURCE)
    message = str(info.value)
    assert message.startswith(SOURCE) and fault in message
    assert "\n" not in message and "\r" not in message
    assert SECRET not in message and TOKEN not in message
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize(
    ("mode", "who"),
    [
        (0o644, "group and others"),
        (0o640, "group"),
        (0o604, "others"),
        (0o444, "group and others"),
    ],
)
def test_a_token_file_others_may_read_gets_a_warning(mode: int, who: str) -> None:
    path = Path("/home/ada/.mast-token")
    warning = mode_warning(path, stat.S_IFREG | mode)
    assert warning == f"token file {path} is readable by {who} (mode {mode:04o}): chmod 600 {path}"


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700, 0o620, 0o602])
def test_a_token_file_only_its_owner_reads_gets_none(mode: int) -> None:
    assert mode_warning(Path("/t"), stat.S_IFREG | mode) is None


def test_objects_that_hold_the_token_never_show_it() -> None:
    from mastfs.archive import Archive, Query
    from mastfs.fetch import Fetcher
    from mastfs.mount import MountOptions
    from mastfs.selection import Selection

    options = MountOptions(
        Path("/mnt"), Query(programs=("6543",)), Selection(), "http://x", token=TOKEN
    )
    fetcher = Fetcher("http://x", TOKEN)
    try:
        holders = [options, fetcher, Archive("http://x", Path("/nonexistent"), TOKEN)]
        for holder in holders:
            assert TOKEN not in repr(holder) and TOKEN not in str(holder), type(holder)
    finally:
        fetcher.close()
