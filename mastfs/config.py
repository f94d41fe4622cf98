"""The config file: defaults for command-line options, `$XDG_CONFIG_HOME/mastfs/config.toml`.

Keys are option names (`cache_size = "10G"`, `server = "..."`, `recommended = true`,
`level = ["2b", "3"]`); top-level keys apply to every command that has the option, a table
named after a command (`[mount]`, `[warm]`) to that command only, over the top level. The
command line wins over the file, and `MASTFS_SERVER` over its `server`. Values go through the
same parsers as the command line, so a bad one is refused the same way, naming the file.

The file is read only if it is ours and no one else may write it (as `private.py` demands of
the cache directory), and it never holds the MAST token: `token_file` names the token's file.
"""

from __future__ import annotations

import argparse
import os
import stat
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mastfs.private import PrivacyError, check_owned

CONFIG_ENV = "MASTFS_CONFIG"
MAX_SIZE = 64 << 10
# Options that are not defaults: what the daemon handshake and the command itself decide.
NOT_SETTABLE = frozenset({"help", "version", "ready_fd", "token_fd", "foreground", "dry_run"})


class ConfigError(Exception):
    """A config file that cannot be used; the message names it, in one line."""


def config_path() -> Path:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "mastfs" / "config.toml"


def load(path: Path) -> dict[str, Any]:
    """The file's tables (empty when there is no file)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"config file {path} is not a regular file")
    try:
        check_owned(path, st, "config file")
    except PrivacyError as exc:
        raise ConfigError(str(exc)) from exc
    if st.st_size > MAX_SIZE:
        raise ConfigError(f"config file {path} is larger than {MAX_SIZE >> 10} KiB")
    try:
        with open(path, "rb") as reader:
            data = tomllib.load(reader)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    if "token" in data or any(isinstance(v, dict) and "token" in v for v in data.values()):
        raise ConfigError(
            f"config file {path}: a MAST token does not belong here; "
            "name a file holding it (mode 600) with token_file"
        )
    return data


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The command's settable options, by key (`cache_size` for `--cache-size`)."""
    out = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                key = option[2:].replace("-", "_")
                if key not in NOT_SETTABLE and action.help != argparse.SUPPRESS:
                    out[key] = action
    return out


def _convert(action: argparse.Action, key: str, value: Any, path: Path) -> Any:
    def one(item: Any) -> Any:
        if isinstance(item, (dict, list)):
            raise ConfigError(f"config file {path}: {key} must be a single value")
        text = str(item).lower() if isinstance(item, bool) else str(item)
        if action.type is None:
            return text
        try:
            return action.type(text)  # type: ignore[operator]
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise ConfigError(f"config file {path}: {key}: {exc}") from exc

    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [one(item) for item in items]
    if action.nargs == 0:  # store_true / store_const
        if not isinstance(value, bool):
            raise ConfigError(f"config file {path}: {key} must be true or false")
        return value
    return one(value)


def apply(
    parsers: Mapping[str, argparse.ArgumentParser],
    data: Mapping[str, Any],
    path: Path,
    skip: Iterable[str] = (),
) -> dict[str, dict[str, list[Any]]]:
    """Make the file's values the defaults of the commands' parsers, before they parse (so
    the command line still wins). Repeatable options (`level`) cannot take a default that the
    command line replaces: theirs are returned, by command, for `fill` after parsing."""
    known: set[str] = set()
    for name, parser in parsers.items():
        known |= _actions(parser).keys()
        if name in data and not isinstance(data[name], dict):
            raise ConfigError(f"config file {path}: [{name}] must be a table")
    for key, value in data.items():
        if isinstance(value, dict) and key in parsers:
            for inner in value:
                if inner not in _actions(parsers[key]):
                    raise ConfigError(
                        f"config file {path}: [{key}] has no option {inner!r}"
                        f" (see mastfs {key} --help)"
                    )
        elif key not in known:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
    later: dict[str, dict[str, list[Any]]] = {}
    for name, parser in parsers.items():
        actions = _actions(parser)
        values = {k: v for k, v in data.items() if not isinstance(v, dict) and k in actions}
        values.update(data.get(name, {}))
        defaults: dict[str, Any] = {}
        for key, value in values.items():
            if key in skip:
                continue
            action = actions[key]
            converted = _convert(action, key, value, path)
            if isinstance(action, argparse._AppendAction):
                later.setdefault(name, {})[action.dest] = converted
            elif action.nargs == 0:
                if converted:
                    defaults[action.dest] = action.const
            else:
                defaults[action.dest] = converted
        parser.set_defaults(**defaults)
    return later


def fill(args: argparse.Namespace, later: Mapping[str, Mapping[str, list[Any]]]) -> None:
    """The file's repeatable options that the command line did not give."""
    for dest, value in later.get(getattr(args, "command", ""), {}).items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, value)
