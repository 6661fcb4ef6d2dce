"""Loopback media fixtures: a port pool in a random slice of 30000-39999."""

import random

import pytest

from ipbx.media.ports import PortPool


@pytest.fixture
def pool() -> PortPool:
    # A random slice keeps concurrently running test sessions off each other's ports;
    # MediaEndpoint.open also skips any port that turns out to be busy.
    first = random.randrange(30000, 39800, 2)
    return PortPool("127.0.0.1", first, first + 199)
