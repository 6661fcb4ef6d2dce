"""The suite runs on two workers (pytest-xdist; `-n 2 --dist loadfile` in pyproject.toml).
A module runs whole on one worker, so its module-scoped servers start once and its tests
keep their order; most tests wait on real peers and timers, so two at a time fit in two
cores. A test marked `alone` measures time or media quality, which the other worker's
load would skew: it starts once the other worker's current test is over, and the other
worker starts no test until it is done.

The turns are two file locks in a directory the controller makes for the run: a test
takes `running` shared (`alone`: exclusive), through `gate`, which an `alone` test holds
while it waits, so that the other worker cannot keep `running` from it test after test.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TURNS = "IPBX_TEST_TURNS"


def pytest_configure(config: pytest.Config) -> None:
    controller = not hasattr(config, "workerinput")
    if controller and config.getoption("numprocesses", None):
        os.environ[TURNS] = tempfile.mkdtemp(prefix="ipbx-test-turns-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and TURNS in os.environ:
        shutil.rmtree(os.environ.pop(TURNS), ignore_errors=True)


@contextmanager
def _turn(alone: bool) -> Iterator[None]:
    directory = os.environ.get(TURNS)
    if directory is None or "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    with (
        (Path(directory) / "gate").open("a") as gate,
        (Path(directory) / "running").open("a") as running,
    ):
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(running, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(running, fcntl.LOCK_UN)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    with _turn(item.get_closest_marker("alone") is not None):
        return (yield)
