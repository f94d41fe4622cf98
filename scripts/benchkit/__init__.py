"""The benchmark harness of GitHub issue 5: mastfs beside its references, measured in one run.

    scripts/bench                      # all sections (< 10 min); updates docs/performance.md
    scripts/bench --only seq,random    # some sections; prints the table, leaves the docs alone
    scripts/bench --list               # the sections

Every figure is printed next to a reference measured in the same run, against the same simulator
(started as a separate process, loopback only), as a ratio:

  seq       cold sequential read of the 1 GiB product (dd bs=1M) against curl (the network
            limit), a no-op pyfuse3 filesystem (scripts/noop_fuse.py, the FUSE limit), rclone
            `--vfs-cache-mode full` and httpdirfs `--cache`; warm re-reads in the same mount
            against a local file in the page cache; re-reads after a remount against the FUSE
            limit. Readahead 1024 KiB (mastfs's default) and the kernel's 128 KiB.
  header    fits.getheader / fits.open + .section of the 4 GiB product through a fresh mount:
            bytes fetched and time, against astroquery's Observations.download_file.
  random    1,000 pread()s of 64 KiB at seeded random offsets of the 4 GiB product: cold, second
            pass, after a remount; against HTTP range GETs and the no-op filesystem.
  parallel  8 dd processes each reading 512 MiB of a different product, against 8 curls.
  memory    peak RSS of the mount daemon while dd streams the 4 GiB product (at 1, 2, 4 GiB).
  meta      program 1999 (10k products): mount until ready, ls -lR and find, twice; against a
            local copy of the same tree; the daemon's peak RSS.

Raw numbers go to bench-out/bench.json; a full run rewrites the table between the markers of
docs/performance.md. Needs root for drop_caches and the readahead (it says so otherwise).

The package, by layer:

  common.py     paths, sizes, seeds, repetitions; BenchError
  procs.py      child processes: environment, timeouts, helpers, CPU and memory readings
  helper.py     the measurements run in a child process (`scripts/bench --helper MODE ...`)
  reads.py      timed reads with dd, and dd's output parsed
  sim.py        the archive simulator in its own process
  session.py    one run's state: temporary directory, simulator, notes, page-cache dropping
  mounts.py     mastfs mounts and other FUSE processes, always unmounted
  peers.py      the references: curl, no-op FUSE, rclone, httpdirfs, astroquery, local files
  results.py    the base of the sections' typed results (JSON as the benchmark writes it)
  sections/     one module per section, each filling its result dataclass
  compare.py    the kinds of comparison a table row makes, and what a goal is
  goals.py      the table's rows and goals, declared as data
  table.py      rows rendered as markdown; the generated block of docs/performance.md
  machine.py    what was measured on: CPU, memory, kernel, code version, peers' versions
  cli.py        arguments, the run of the sections, bench.json
"""
