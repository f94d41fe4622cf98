"""Section mount_time: mount → ready of programs 2734 and 1999 against the real archive's manners.

A simulator of its own under the "mast" profile (`mastfs sim --profile mast`: 0.5 s API calls,
80 ms per request, 25 MB/s per connection, product lists that take server time per row;
docs/simulator.md). For each program, `RUNS` times, alternating which goes first:

- mastfs: `mastfs mount --program P` with a fresh cache, from the command to the mount being
  ready (the daemon's ready message), as the user waits for it;
- astroquery 0.4.11 as a fresh process: `Observations.query_criteria(proposal_id=P)` then
  `get_product_list` of the table, from the process's start to its end (imports included, as
  mastfs's includes its own), and, printed by the process, the two calls alone.

Medians are reported; the goal is mastfs no slower than the astroquery process (issue 14).
The sections run against `session.sim` as well, but this one needs the profile: it starts its
simulator with `MAST_SIM_ARGS` (env `BENCH_MOUNT_TIME_SIM` to change them).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..common import PY, RUNS, BenchError
from ..mounts import mastfs
from ..procs import clean_env, run, tail
from ..results import Result
from ..session import Session
from ..sim import Simulator

PROGRAMS = ("2734", "1999")
# The simulator's arguments; `BENCH_MOUNT_TIME_SIM` replaces them (e.g. "--profile mast --set
# product_ms_per_row=0" for the archive without its per-row time).
MAST_SIM_ARGS = tuple(os.environ.get("BENCH_MOUNT_TIME_SIM", "--profile mast").split())

# Run in a fresh process: astroquery's own query_criteria + get_product_list, timed inside.
_ASTROQUERY = """
import json, sys, time
started = time.perf_counter()
from astroquery.mast import Observations
imported = time.perf_counter()
table = Observations.query_criteria(proposal_id=sys.argv[1])
products = Observations.get_product_list(table)
done = time.perf_counter()
print(json.dumps({"observations": len(table), "products": len(products),
                  "import_s": imported - started, "calls_s": done - imported}))
"""


@dataclass
class ProgramTimes(Result):
    """One program's runs (seconds) and their medians."""

    mastfs_runs: list[float] = field(default_factory=list)
    astroquery_runs: list[float] = field(default_factory=list)
    astroquery_calls_runs: list[float] = field(default_factory=list)
    mastfs_s: float | None = None
    astroquery_s: float | None = None
    astroquery_calls_s: float | None = None
    products: int | None = None

    def finish(self) -> None:
        if self.mastfs_runs:
            self.mastfs_s = statistics.median(self.mastfs_runs)
        if self.astroquery_runs:
            self.astroquery_s = statistics.median(self.astroquery_runs)
            self.astroquery_calls_s = statistics.median(self.astroquery_calls_runs)


@dataclass
class MountTimeResult(Result):
    sim_args: list[str] | None = None
    programs: dict[str, ProgramTimes] | None = None


def measure(session: Session, r: MountTimeResult) -> None:
    r.sim_args = list(MAST_SIM_ARGS)
    sim = Simulator(session.tmp / "sim-mast.log", MAST_SIM_ARGS)
    try:
        config = _astroquery_config(session, sim.url)
        r.programs = {}
        for program in PROGRAMS:
            times = r.programs[program] = ProgramTimes()
            for i in range(RUNS):
                first, second = (_mastfs, _astroquery) if i % 2 == 0 else (_astroquery, _mastfs)
                first(session, sim.url, program, config, times)
                second(session, sim.url, program, config, times)
            times.finish()
            session.say(
                f"mount_time: program {program}: mastfs mount {times.mastfs_s:.2f} s, "
                f"astroquery process {times.astroquery_s:.2f} s "
                f"(its two calls {times.astroquery_calls_s:.2f} s), medians of {RUNS}"
            )
    finally:
        sim.stop()


def _mastfs(
    session: Session, server: str, program: str, config: Path, times: ProgramTimes
) -> None:
    cache = session.fresh("cache")
    try:
        with mastfs(session, program, cache, server=server) as m:
            times.mastfs_runs.append(m.ready_s)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _astroquery(
    session: Session, server: str, program: str, config: Path, times: ProgramTimes
) -> None:
    env = clean_env(XDG_CONFIG_HOME=str(config), XDG_CACHE_HOME=str(config / "cache"))
    started = time.perf_counter()
    done = run([PY, "-c", _ASTROQUERY, program], timeout=900, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"astroquery for program {program} failed: {tail(done.stderr)}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    times.astroquery_runs.append(wall)
    times.astroquery_calls_runs.append(float(out["calls_s"]))
    times.products = int(out["products"])


def _astroquery_config(session: Session, server: str) -> Path:
    """An XDG config home whose astroquery.cfg points astroquery at `server`."""
    home = session.fresh("xdg")
    (home / "astropy").mkdir()
    (home / "astropy" / "astroquery.cfg").write_text(f"[mast]\nserver = {server}\n")
    return home
