"""The fault matrix of GitHub issue 13 (integrity): `scripts/fault-matrix --help`.

    scripts/fault-matrix                   # every case (prints the table; ~10 min)
    scripts/fault-matrix --only 5xx,stall  # some cases
    scripts/fault-matrix --list            # the cases
    scripts/fault-matrix --doc             # also writes the table into docs/integrity.md

Two simulators run as processes of their own: the faulty one the mounts read from, and an
honest reference whose bytes every read is compared with. Each case mounts with real
`mastfs mount` daemons, reads with a sequential (1 MiB reads) and a random (64 KiB preads at
seeded offsets) reader in child processes, then clears the fault and checks that the same mount
reads correctly again. tests/mount/test_fault_matrix.py runs the same cases, smaller.

The package, by layer:

  common.py     paths, sizes, the child environment; MatrixError
  cases.py      the cases as data (shared with the tests), the run sizes
  sim.py        the two simulators in processes; the reference bytes
  reader.py     the reader child (standard library only, run as a script)
  readers.py    the parent's side of a reader: deadlines, tallies
  mounts.py     mastfs mounts: start, kill -9, stop; a small tmpfs
  scenarios.py  each kind of case, run; its Outcome
  table.py      the markdown table; the block of docs/integrity.md
  cli.py        arguments, the run, the JSON
"""
