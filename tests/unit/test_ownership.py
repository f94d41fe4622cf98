"""Owners and modes of a shared mount's entries, and who may change its selection (pure)."""

from __future__ import annotations

import pytest

from mastfs.ownership import Ownership, OwnershipError, parse_mode

OWNER, GROUP, OTHER, ROOT = 1000, 1000, 65534, 0


def test_defaults_are_read_only_and_the_owner_keeps_write_on_the_root() -> None:
    own = Ownership.build(OWNER, GROUP)
    assert own.product(exclusive=False) == (0o444, GROUP)
    assert own.directory(is_root=False) == 0o555
    # `mastfs select` needs it: the kernel checks write permission for a user.* setxattr.
    assert own.directory(is_root=True) == 0o755
    assert own.view() == (0o444, GROUP)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o027, 0o077])
def test_exclusive_access_files_are_the_owners_whatever_the_umask(umask: int) -> None:
    own = Ownership.build(OWNER, GROUP, umask=umask, private_views=True)
    assert own.product(exclusive=True) == (0o400, GROUP)
    assert own.view() == (0o400, GROUP)


def test_umask_clears_bits_from_read_only_modes() -> None:
    own = Ownership.build(OWNER, GROUP, umask=0o027)
    assert own.product(exclusive=False) == (0o440, GROUP)
    assert own.directory(is_root=False) == 0o550
    assert own.directory(is_root=True) == 0o750


def test_explicit_modes_win_over_the_umask() -> None:
    own = Ownership.build(OWNER, GROUP, umask=0o077, file_mode=0o644, dir_mode=0o500)
    assert own.product(exclusive=False) == (0o644, GROUP)
    assert own.directory(is_root=False) == 0o500
    assert own.directory(is_root=True) == 0o700
    # An explicit file mode does not open exclusive-access files to others.
    assert own.product(exclusive=True) == (0o400, GROUP)


def test_exclusive_group_opts_a_group_in() -> None:
    own = Ownership.build(OWNER, GROUP, exclusive_gid=4242, private_views=True)
    assert own.product(exclusive=True) == (0o440, 4242)
    assert own.view() == (0o440, 4242)
    assert own.product(exclusive=False) == (0o444, GROUP)


def test_only_the_mounting_user_and_root_change_the_selection() -> None:
    # Root mounted, files given to another uid: that uid owns the files, not the selection.
    own = Ownership.build(OWNER, GROUP, mounter=ROOT)
    assert own.may_change_selection(ROOT)
    assert not own.may_change_selection(OWNER)
    own = Ownership.build(OWNER, GROUP)
    assert own.may_change_selection(OWNER) and own.may_change_selection(ROOT)
    assert not own.may_change_selection(OTHER)


def test_private_files_open_for_their_owner_and_root_only() -> None:
    own = Ownership.build(OWNER, GROUP)
    assert own.may_open_private(OWNER) and own.may_open_private(ROOT)
    assert not own.may_open_private(OTHER)
    # With a group, the kernel checks membership (supplementary groups included).
    assert Ownership.build(OWNER, GROUP, exclusive_gid=4242).may_open_private(OTHER)


@pytest.mark.parametrize(("text", "value"), [("0644", 0o644), ("644", 0o644), ("0o750", 0o750)])
def test_parse_mode(text: str, value: int) -> None:
    assert parse_mode(text) == value


@pytest.mark.parametrize("text", ["", "8", "0x1ff", "rw-r--r--", "4755", "1777", "07777"])
def test_parse_mode_refuses_what_is_not_permission_bits(text: str) -> None:
    with pytest.raises(OwnershipError, match="invalid mode"):
        parse_mode(text)


def test_build_refuses_bits_beyond_permissions() -> None:
    with pytest.raises(OwnershipError, match="umask"):
        Ownership.build(OWNER, GROUP, umask=0o1022)
