"""Shared fixtures: a fresh embedded inventory loaded with Otter-net."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
