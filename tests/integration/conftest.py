"""Integration tests run against a live Infrahub (scripts/infrahub-stack, then scripts/infrahub-bootstrap).

Skipped unless INFRAHUB_ADDRESS is set. Identifiers carry a run-specific number, so reruns against
the same long-lived server never collide with what earlier runs recorded.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from infrahub_sdk import Config, InfrahubClient

from allocation.backends.infrahub import InfrahubInventory
from allocation.model import MAIN
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


async def sdk_query(
    query: str, variables: dict[str, Any] | None = None, branch: str = MAIN
) -> dict[str, Any]:
    """Ask Infrahub's own GraphQL through a plain SDK client, not through the backend under test."""
    settings = InfrahubSettings()
    token = settings.api_token.get_secret_value() if settings.api_token else None
    client = InfrahubClient(address=settings.address, config=Config(api_token=token))
    data: dict[str, Any] = await client.execute_graphql(
        query=query, variables=variables or {}, branch_name=branch
    )
    return data


async def pool_and_port_usage(inventory: InfrahubInventory, site: str) -> tuple[dict[str, int], int]:
    """What the pools hold (VLAN IDs, prefix addresses) and how many of the site's ports are taken."""
    pools = {p.name: p.used for p in await inventory.pool_usage()}
    ports = sum(p.used for p in await inventory.port_usage() if p.site == site)
    return pools, ports
