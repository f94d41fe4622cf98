"""The architecture's import rules, checked by parsing every module of `mastfs` with `ast`.

- The pure layers (model, selection, tree, views, xattrs, and jsregex, which selection uses)
  import no trio, http (http.client), httpx, pyfuse3, diskcache or astroquery, and within
  mastfs only what the architecture table allows.
- The query session, shared by every front end, knows nothing of FUSE, even through what it
  imports.
- Nothing outside `mastfs/sim/` imports `mastfs.sim`, except the `demo` command and the CLI
  that starts the simulator; `mastfs/sim/` imports nothing from `mastfs` outside `sim/`. The two
  sides meet only over HTTP.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mastfs"
IO_LIBRARIES = {"trio", "http", "httpx", "pyfuse3", "diskcache", "astroquery"}
# What each pure module may import from mastfs (besides itself).
PURE = {
    "mastfs.model": set(),
    "mastfs.jsregex": set(),
    "mastfs.selection": {"mastfs.model", "mastfs.jsregex"},
    "mastfs.tree": {"mastfs.model"},
    "mastfs.views": {"mastfs.model", "mastfs.selection", "mastfs.tree"},
    "mastfs.xattrs": {"mastfs.model", "mastfs.selection", "mastfs.references"},
    "mastfs.ownership": set(),
    "mastfs.safetext": set(),
    "mastfs.progress": {"mastfs.selection"},
    "mastfs.fitsheaders": set(),
    "mastfs.references": {"mastfs.fitsheaders"},
    "mastfs.crds": {"mastfs.references"},
    "mastfs.calibration": {"mastfs.crds", "mastfs.model", "mastfs.references"},
    "mastfs.datacache": set(),
    "mastfs.cloud": set(),
    # The block cache's pure parts: block arithmetic, the readahead policy, the LRU, counters.
    "mastfs.cache.blocks": set(),
    "mastfs.cache.readahead": {"mastfs.link"},
    # The link's round trip and rate, as range answers measure them.
    "mastfs.link": set(),
    "mastfs.cache.memory": {"mastfs.cache.blocks"},
    "mastfs.cache.stats": set(),
}
SIM_ALLOWED_IMPORTERS = {"mastfs.cli", "mastfs.demo"}
# Front-end independent: no pyfuse3 and no FUSE layer, directly or through other modules.
FUSE_FREE = {
    "mastfs.session",
    "mastfs.core",
    "mastfs.cache",
    # The fsspec front end's loop. The front end itself reads its options with the CLI's parser,
    # whose mount command imports the FUSE side when it runs: its readers run with pyfuse3
    # unimportable instead (tests/core/test_fsspec.py, tests/clients/test_fsspec_astropy.py).
    "mastfs.loop",
    "mastfs.headers",
}
# The FUSE front end and the wiring of a mount; the core below them does not know FUSE exists.
FUSE_MODULES = {"pyfuse3", "mastfs.fs", "mastfs.mount"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names of everything `module` imports, at any depth of its code.

    `from a import b` yields both `a` and `a.b` (b may be a submodule); relative imports are
    resolved against the module's package.
    """
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def top_level(name: str) -> str:
    return name.split(".", 1)[0]


def is_within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def mastfs_modules() -> dict[str, set[str]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        out[name] = imports(path.read_text(), name, path.name == "__init__.py")
    return out


def mastfs_targets(found: set[str], modules: set[str]) -> set[str]:
    """The mastfs modules among `found` (`from mastfs import x` names module x, not mastfs)."""
    return {n for n in found if n in modules and n != "mastfs"}


def test_pure_layers_import_no_io_library() -> None:
    modules = mastfs_modules()
    for name in PURE:
        if name not in modules:
            pytest.fail(f"{name} is missing")
        bad = {n for n in modules[name] if top_level(n) in IO_LIBRARIES}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_pure_layers_import_only_what_the_architecture_allows() -> None:
    modules = mastfs_modules()
    names = set(modules)
    for name, allowed in PURE.items():
        used = mastfs_targets(modules[name], names) - {name}
        assert used <= allowed, f"{name} imports {sorted(used - allowed)}"


def test_only_the_fuse_front_end_imports_pyfuse3() -> None:
    modules = mastfs_modules()
    users = {name for name, found in modules.items() if "pyfuse3" in {top_level(n) for n in found}}
    allowed = FUSE_MODULES - {"pyfuse3"}
    assert users <= allowed, f"{sorted(users - allowed)} import pyfuse3"
    assert "mastfs.fs" in users  # the check sees imports at all


def reachable(name: str, modules: dict[str, set[str]]) -> set[str]:
    """Everything `name` imports, and everything those mastfs modules import, transitively."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        found = modules.get(todo.pop(), set())
        new = found - seen
        seen |= new
        todo.extend(n for n in new if n in modules)
    return seen


def test_the_session_knows_no_fuse() -> None:
    modules = mastfs_modules()
    for name in FUSE_FREE:
        if name not in modules:
            pytest.fail(f"{name} is missing")
        bad = {
            n for n in reachable(name, modules) if top_level(n) in FUSE_MODULES or n in FUSE_MODULES
        }
        assert not bad, f"{name} reaches {sorted(bad)}"


def test_only_the_demo_entry_points_import_the_simulator() -> None:
    modules = mastfs_modules()
    for name, found in modules.items():
        if is_within(name, "mastfs.sim") or name in SIM_ALLOWED_IMPORTERS:
            continue
        bad = {n for n in found if is_within(n, "mastfs.sim")}
        assert not bad, f"{name} imports the simulator: {sorted(bad)}"


def test_simulator_imports_nothing_else_from_mastfs() -> None:
    modules = mastfs_modules()
    for name, found in modules.items():
        if not is_within(name, "mastfs.sim"):
            continue
        bad = {n for n in found if top_level(n) == "mastfs" and not is_within(n, "mastfs.sim")}
        # `from mastfs import sim` names the package mastfs.sim only through its alias.
        bad -= {"mastfs", "mastfs.sim"}
        assert not bad, f"{name} imports {sorted(bad)} from outside mastfs.sim"


# The checker itself must be able to fail.


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import trio", "mastfs.tree", {"trio"}),
        ("def f():\n    import httpx.x", "mastfs.tree", {"httpx.x"}),
        ("from pyfuse3 import FUSEError", "mastfs.views", {"pyfuse3", "pyfuse3.FUSEError"}),
        ("from . import model", "mastfs.views", {"mastfs", "mastfs.model"}),
        ("from .sim import server", "mastfs.fs", {"mastfs.sim", "mastfs.sim.server"}),
        ("from .. import model", "mastfs.sim.server", {"mastfs", "mastfs.model"}),
        (
            "from ..fetch import Fetcher",
            "mastfs.sim.server",
            {"mastfs.fetch", "mastfs.fetch.Fetcher"},
        ),
        ("from . import portal", "mastfs.sim", {"mastfs.sim", "mastfs.sim.portal"}),
    ],
)
def test_import_extraction(source: str, module: str, expected: set[str]) -> None:
    is_package = module == "mastfs.sim"
    assert imports(source, module, is_package) == expected


def test_reachable_follows_mastfs_modules() -> None:
    modules = {"mastfs.a": {"mastfs.b", "os"}, "mastfs.b": {"pyfuse3"}, "mastfs.c": {"trio"}}
    assert reachable("mastfs.a", modules) == {"mastfs.b", "os", "pyfuse3"}


def test_checker_flags_violations() -> None:
    found = imports("from .. import fetch\nimport diskcache", "mastfs.sim.portal")
    assert {n for n in found if top_level(n) in IO_LIBRARIES} == {"diskcache"}
    assert "mastfs.fetch" in found
    assert not is_within("mastfs.simulator", "mastfs.sim")
    assert is_within("mastfs.sim.server", "mastfs.sim")
