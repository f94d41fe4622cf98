"""`mastfs demo`: the one place the product meets the archive simulator in one process.

The simulator runs in background threads of the mount daemon, so `mastfs umount` ends both.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

log = logging.getLogger(__name__)

DEMO_PROGRAM = "2734"


def start_embedded_sim(stack: AsyncExitStack) -> str:
    """Start the simulator on a free loopback port; stopped when `stack` closes."""
    from mastfs.sim.server import SimServer

    sim = SimServer(host="127.0.0.1", port=0)
    sim.start()
    stack.callback(sim.stop)
    log.info("embedded archive simulator at %s", sim.url)
    return str(sim.url)
