"""A migrated SQLite store in a fresh directory for every test."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from ipbx.store import Store


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'ipbx.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(store_url)
    opened.migrate()
    yield opened
    opened.close()
