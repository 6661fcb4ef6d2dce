"""The scale part's placement (bench/parts/rtp.py, pin_workers_apart) against a real
ipbx: its media workers, which it starts just after it says it is ready, each end up on
the core asked for, and its own process on the server's."""

from __future__ import annotations

import os
from pathlib import Path

from bench.parts.rtp import pin_workers_apart
from tests.support.processes import descendants
from tests.support.server import extension_range, start_ipbx


def test_the_workers_started_after_ready_are_each_pinned_to_their_core(tmp_path: Path) -> None:
    cores = sorted(os.sched_getaffinity(0))
    first, last = cores[0], cores[-1]
    server = start_ipbx(tmp_path, extension_range(2), media=["workers: 2"])
    try:
        pin_workers_apart(server.pid, last, [last, first])
        workers = sorted(set(descendants(server.pid)) - {server.pid})
        assert len(workers) == 2
        assert os.sched_getaffinity(server.pid) == {last}
        assert [os.sched_getaffinity(worker) for worker in workers] == [{last}, {first}]
    finally:
        server.stop()
