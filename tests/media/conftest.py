"""Loopback media fixtures: a port pool in a random slice of 30000-39999."""

from collections.abc import Iterator

import pytest

from ipbx.media.ports import PortPool
from tests.support.media import POOLS, loopback_pool


@pytest.fixture
def pool() -> Iterator[PortPool]:
    pool = loopback_pool()
    POOLS.append(pool)  # run() gives it the media workers make test asks for
    yield pool
    POOLS.remove(pool)
