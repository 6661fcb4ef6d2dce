"""Loopback media fixtures: a port pool in a random slice of 30000-39999."""

import random
from collections.abc import Iterator

import pytest

from ipbx.media.ports import PortPool
from tests.support.media import POOLS


@pytest.fixture
def pool() -> Iterator[PortPool]:
    # A random slice keeps concurrently running test sessions off each other's ports;
    # MediaEndpoint.open also skips any port that turns out to be busy.
    first = random.randrange(30000, 39800, 2)
    pool: PortPool = PortPool("127.0.0.1", first, first + 199)
    POOLS.append(pool)  # run() gives it the media workers make test asks for
    yield pool
    POOLS.remove(pool)
