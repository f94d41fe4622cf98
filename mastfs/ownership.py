"""Who owns a mount's files, their modes, and who may do what: the rules of a shared mount.

A mount's files and folders belong to `uid`/`gid` (the mounting user unless `--uid/--gid`),
with modes from `--umask` or `--file-mode/--dir-mode`; the kernel enforces them
(`default_permissions`). The filesystem is read-only, so the defaults carry no write bit
(`0444` files, `0555` folders under the default umask 022), except the owner's on the root
folder: with `default_permissions` the kernel asks for write permission before it passes a
`setxattr` of a `user.*` name on, and `mastfs select` sets `user.mastfs.selection` there.

Bytes read with the owner's MAST token are the owner's: exclusive-access products, and the
views that name the logged-in user when a token is set (`manifest.html`, `selection.csv`), are
`0400` whatever the umask, or `0440` and of group `exclusive_gid` when the owner shares them
with a group (`--exclusive-group`). Only the mounting user and root may change the selection.
Pure: no I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_UMASK = 0o022
# Read-only: what a umask of 0 would show.
FILE_BASE = 0o444
DIR_BASE = 0o555
# The owner alone, or the owner and the group the owner named.
PRIVATE = 0o400
PRIVATE_TO_GROUP = 0o440
# Only permission bits: no set-id or sticky bits on a mount's files.
MODE_BITS = 0o777
ROOT_UID = 0


class OwnershipError(ValueError):
    """An impossible mode or umask; the message names the value."""


def parse_mode(text: str, what: str = "mode") -> int:
    """`0644`, `644`, `0o644` -> 0o644; permission bits only."""
    digits = text.strip().lower().removeprefix("0o")
    if not digits or len(digits) > 4 or any(c not in "01234567" for c in digits):
        raise OwnershipError(f"invalid {what} {text!r}: expected octal digits, e.g. 0755")
    value = int(digits, 8)
    if value & ~MODE_BITS:
        raise OwnershipError(
            f"invalid {what} {text!r}: only permission bits (at most 0777) are allowed"
        )
    return value


@dataclass(frozen=True)
class Ownership:
    """The owner, group and modes of a mount's entries (see the module docstring).

    `mounter` is the uid of the mounting user: with root, the only caller that may change the
    selection. `private_views`: the views name a logged-in user (a token is set).
    """

    uid: int
    gid: int
    mounter: int
    file_mode: int = FILE_BASE & ~DEFAULT_UMASK
    dir_mode: int = DIR_BASE & ~DEFAULT_UMASK
    exclusive_gid: int | None = None
    private_views: bool = False

    @classmethod
    def build(
        cls,
        uid: int,
        gid: int,
        *,
        mounter: int | None = None,
        umask: int = DEFAULT_UMASK,
        file_mode: int | None = None,
        dir_mode: int | None = None,
        exclusive_gid: int | None = None,
        private_views: bool = False,
    ) -> Ownership:
        """Modes from `umask` unless given; `mounter` defaults to `uid`."""
        for name, value in (("umask", umask), ("file mode", file_mode), ("dir mode", dir_mode)):
            if value is not None and value & ~MODE_BITS:
                raise OwnershipError(f"invalid {name} {value:#o}: at most 0777")
        return cls(
            uid=uid,
            gid=gid,
            mounter=uid if mounter is None else mounter,
            file_mode=FILE_BASE & ~umask if file_mode is None else file_mode,
            dir_mode=DIR_BASE & ~umask if dir_mode is None else dir_mode,
            exclusive_gid=exclusive_gid,
            private_views=private_views,
        )

    def directory(self, is_root: bool) -> int:
        """A folder's permission bits; the root keeps the owner's write bit (see above)."""
        return self.dir_mode | 0o200 if is_root else self.dir_mode

    def _private(self) -> tuple[int, int]:
        if self.exclusive_gid is None:
            return PRIVATE, self.gid
        return PRIVATE_TO_GROUP, self.exclusive_gid

    def product(self, exclusive: bool) -> tuple[int, int]:
        """(permission bits, gid) of a product's file."""
        return self._private() if exclusive else (self.file_mode, self.gid)

    def view(self) -> tuple[int, int]:
        """(permission bits, gid) of `manifest.html` and `selection.csv`."""
        return self._private() if self.private_views else (self.file_mode, self.gid)

    def may_change_selection(self, caller: int) -> bool:
        return caller in (self.mounter, ROOT_UID)

    def may_open_private(self, caller: int) -> bool:
        """Whether `caller` may open an owner-only file, as the kernel decides from the modes
        above; with a group, membership (supplementary groups too) is the kernel's to check."""
        return self.exclusive_gid is not None or caller in (self.uid, ROOT_UID)
