"""`mount.mastfs`: the helper that mount(8) runs for fstab lines and systemd mount units.

mount(8) runs `/sbin/mount.mastfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]` for the type
`mastfs`, and `/sbin/mount.fuse.mastfs` (the same program) for `fuse.mastfs`, the type the
kernel then shows. `translate` (pure) turns that into a `mastfs mount` command line:

- SOURCE is the query: `2734` or `2734,1558` (programs), `program=2734`, or `KEY=VALUE` for
  another query option (`collection=JWST`); `demo` mounts the built-in simulator's demo.
- each OPTION `key=value` becomes `--key value` (`cache_size=10G` -> `--cache-size 10G`; repeat
  it for several values: `group=CAL,group=X1DINTS`), a bare `key` becomes `--key`
  (`allow_other`, `recommended`);
- what belongs to mount(8) or systemd is left out: `defaults`, `auto`, `noauto`, `_netdev`,
  `nofail`, `user`, `users`, `rw`, `ro`, `x-systemd.*` and every other `x-*`, and the like.

`mastfs mount` then checks everything as on the command line and returns once the mount is
ready (or failed, with the reason), as mount(8) expects of a helper.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# mount(8)'s and systemd's own options, never mastfs's.
IGNORED = frozenset(
    {
        "defaults",
        "auto",
        "noauto",
        "_netdev",
        "nofail",
        "user",
        "nouser",
        "users",
        "owner",
        "group",
        "rw",
        "ro",
        "dev",
        "nodev",
        "suid",
        "nosuid",
        "exec",
        "noexec",
        "sync",
        "async",
        "atime",
        "noatime",
        "relatime",
        "strictatime",
        "nodiratime",
        "lazytime",
        "loop",
    }
)
IGNORED_PREFIXES = ("x-", "comment=", "helper=")
# Options that would keep mount(8) waiting or break the daemon's handshake.
REFUSED = frozenset({"f", "foreground", "ready_fd", "token_fd", "ready-fd", "token-fd"})
QUERY_KEYS = frozenset({"program", "target", "radius", "collection", "instrument", "filters"})
USAGE = "usage: mount.mastfs SOURCE MOUNTPOINT [-sfnv] [-o OPTION[,OPTION...]]"
HELP = """The helper mount(8) runs for a mastfs line in /etc/fstab or a systemd .mount unit;
link it as /sbin/mount.mastfs and /sbin/mount.fuse.mastfs.

SOURCE     the query: 2734 or 2734,1558 (programs), program=2734, collection=JWST, ...;
           demo for the built-in simulator's demo
-o OPTIONS mastfs mount's options without dashes: cache_size=10G,recommended,allow_other;
           repeat one for several values (group=CAL,group=X1DINTS); mount(8)'s and
           systemd's own (defaults, noauto, nofail, _netdev, x-systemd.*) are left to them
-f         pretend (mount(8)'s fake mount)

Example /etc/fstab line:
  2734  /mnt/mast/2734  fuse.mastfs  _netdev,noauto,x-systemd.automount,recommended  0 0
See docs/usage.md, "fstab and systemd"."""


class HelperError(Exception):
    """A line mount(8) can pass on to the user."""


def _flag(key: str) -> str:
    return "--" + key.strip().replace("_", "-")


def _options(text: str) -> list[str]:
    argv: list[str] = []
    for item in text.split(","):
        item = item.strip()
        if not item or item in IGNORED or item.startswith(IGNORED_PREFIXES):
            continue
        key, sep, value = item.partition("=")
        if key.strip() in REFUSED:
            raise HelperError(f"option {key!r} cannot be used in a mount table")
        argv += [_flag(key), value] if sep else [_flag(key)]
    return argv


def _source(source: str) -> list[str]:
    if source.replace(",", "").isdigit():
        return ["--program", source]
    key, sep, value = source.partition("=")
    if not sep or key not in QUERY_KEYS or not value:
        raise HelperError(
            f"invalid source {source!r}: expected a program (2734), KEY=VALUE with KEY one of "
            f"{', '.join(sorted(QUERY_KEYS))}, or demo"
        )
    return [_flag(key), value]


def translate(source: str, mountpoint: str, options: Sequence[str]) -> list[str] | None:
    """The `mastfs` arguments for mount(8)'s call, or None for a fake mount (`-f`)."""
    fake = False
    opts: list[str] = []
    items = iter(options)
    for arg in items:
        if arg == "-o":
            text = next(items, None)
            if text is None:
                raise HelperError("-o needs a value")
            opts += _options(text)
        elif arg.startswith("-o"):
            opts += _options(arg[2:])
        elif arg in ("-N", "-t"):
            next(items, None)  # a namespace, a type: mount(8)'s business
        elif arg.startswith("-") and set(arg[1:]) <= set("sfnvwri"):
            fake = fake or "f" in arg
        else:
            raise HelperError(f"unexpected argument {arg!r}; {USAGE}")
    if fake:
        return None
    if source == "demo":
        return ["demo", *opts, mountpoint]
    return ["mount", *_source(source), *opts, mountpoint]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(f"{USAGE}\n\n{HELP}")
        return 0
    if len(argv) < 2 or argv[0].startswith("-") or argv[1].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        args = translate(argv[0], argv[1], argv[2:])
    except HelperError as exc:
        print(f"mount.mastfs: error: {exc}", file=sys.stderr)
        return 2
    if args is None:
        return 0
    from mastfs.cli import build_parser
    from mastfs.cli import main as mastfs_main

    command = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices[args[0]]
    for arg in args:
        if arg.startswith("--") and arg not in command._option_string_actions:
            key = arg[2:].replace("-", "_")
            print(
                f"mount.mastfs: error: unknown option {key!r} (the options of "
                f"`mastfs {args[0]} --help`, without dashes)",
                file=sys.stderr,
            )
            return 2
    return mastfs_main(args)


if __name__ == "__main__":
    sys.exit(main())
