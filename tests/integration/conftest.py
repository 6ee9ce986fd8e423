"""Integration tests run against a live Infrahub (scripts/infrahub-stack, then scripts/infrahub-bootstrap).

Skipped unless INFRAHUB_ADDRESS is set. Identifiers carry a run-specific number, so reruns against
the same long-lived server never collide with what earlier runs recorded.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Callable

import pytest

from allocation.backends.infrahub import InfrahubInventory
from allocation.settings import InfrahubSettings

_RUN = int(time.time()) % 100000
_COUNTER = itertools.count(1)

requires_infrahub = pytest.mark.skipif(
    not os.environ.get("INFRAHUB_ADDRESS"), reason="INFRAHUB_ADDRESS is not set"
)


@pytest.fixture
async def infrahub() -> AsyncIterator[InfrahubInventory]:
    inventory = InfrahubInventory.from_settings(InfrahubSettings())
    yield inventory
    await inventory.close()


@pytest.fixture
def new_id() -> Callable[[], str]:
    return lambda: f"IT{_RUN}-{next(_COUNTER):04d}"
