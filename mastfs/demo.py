"""`mastfs demo`: the one place the product meets the archive simulator in one process.

The simulator runs in background threads of the mount daemon, so `mastfs umount` ends both.
Once mounted, `next_steps` shows what to try, with a real file of the mount.
"""

from __future__ import annotations

import csv
import io
import logging
import shlex
from contextlib import AsyncExitStack
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

DEMO_PROGRAM = "2734"
# The demo's showcase: a spectrum time series, the program's science product.
SHOWCASE_SUFFIX = "_x1dints"


def start_embedded_sim(stack: AsyncExitStack) -> str:
    """Start the simulator on a free loopback port; stopped when `stack` closes."""
    from mastfs.sim.server import SimServer

    sim = SimServer(host="127.0.0.1", port=0)
    sim.start()
    stack.callback(sim.stop)
    log.info("embedded archive simulator at %s", sim.url)
    return str(sim.url)


def next_steps(mountpoint: Path) -> str:
    """Commands to try on the mounted demo, with the mount point as the user named it."""
    example = _example_file(mountpoint)
    mp = shlex.quote(str(mountpoint))
    lines = []
    if example is not None:
        path, suffix = example
        folder = mountpoint / path.parts[0] if len(path.parts) > 1 else mountpoint
        lines.append(
            f"  browse:   ls {shlex.quote(str(folder))}; "
            f"grep {shlex.quote(suffix)} {shlex.quote(str(mountpoint / 'selection.csv'))}"
        )
        lines.append(f"  open:     {_fits_info_command(mountpoint / path)}")
    else:
        lines.append(f"  browse:   ls {mp}")
    lines.append(f"  select:   mastfs select {mp} --recommended")
    lines.append(f"  unmount:  mastfs umount {mp}")
    return "\n".join(lines)


def _example_file(mountpoint: Path) -> tuple[PurePosixPath, str] | None:
    """A FITS file of the mount (the showcase product if selected): its path in the mount
    and its suffix, read from the mount's own `selection.csv`."""
    try:
        text = (mountpoint / "selection.csv").read_text()
    except OSError as exc:
        log.debug("demo: cannot read selection.csv: %s", exc)
        return None
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r.get("Path")]
    fits = [r for r in rows if r["Filename"].endswith(".fits")]
    showcase = [r for r in fits if r["Suffix"] == SHOWCASE_SUFFIX]
    for candidates in (showcase, fits):
        if candidates:
            row = candidates[0]
            return PurePosixPath(row["Path"]), row["Suffix"] or row["Filename"]
    return None


def _fits_info_command(path: Path) -> str:
    if shlex.quote(str(path)) == str(path):
        return f"python -c \"from astropy.io import fits; fits.info('{path}')\""
    # A path the shell would mangle inside double quotes goes as an argument instead.
    return (
        "python -c 'import sys; from astropy.io import fits; fits.info(sys.argv[1])' "
        + shlex.quote(str(path))
    )
