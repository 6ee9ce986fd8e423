"""Shared fixtures: a fresh embedded inventory loaded with Otter-net."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from allocation.backends.embedded import EmbeddedInventory
from tests.support import DATA


@pytest.fixture
async def inventory(tmp_path: Path) -> AsyncIterator[EmbeddedInventory]:
    inv = EmbeddedInventory(tmp_path / "inventory.sqlite3")
    inv.load(DATA)
    yield inv
    await inv.close()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session, shared by flow, portal and integration tests.
    Harnesses must not nest: a second one started inside the first left a flow run hanging."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(), temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
