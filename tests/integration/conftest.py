"""Integration tests run against a live Infrahub (scripts/infrahub-stack, then scripts/infrahub-bootstrap).

Skipped unless INFRAHUB_ADDRESS is set. Identifiers carry a run-specific number, so reruns against
the same long-lived server never collide with what earlier runs recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from infrahub_sdk import Config, InfrahubClient
from infrahub_sdk.exceptions import GraphQLError

from allocation.backends.infrahub import InfrahubInventory
from allocation.model import MAIN
from allocation.results import Outcome
from allocation.settings import InfrahubSettings
from allocation.transitions import Transition
from tests import lifecycle

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


# What one service holds in the pools and ports, as its reservations record it: per service, so
# that other clients of a shared Infrahub allocating at the same time do not disturb the count.
HELD = """
query Held($identifier: String!) {
  ServiceReservation(service_identifier__value: $identifier) {
    edges { node { resource { value } claimed_on { value } released_on { value } } }
  }
}
"""


async def held(identifier: str) -> dict[str, tuple[str, str | None]]:
    """The service's reservations: resource -> (claimed on, released on)."""
    data = await sdk_query(HELD, {"identifier": identifier})
    return {
        r["node"]["resource"]["value"]: (r["node"]["claimed_on"]["value"], r["node"]["released_on"]["value"])
        for r in data["ServiceReservation"]["edges"]
    }


async def pool_and_port_usage(inventory: InfrahubInventory, site: str) -> tuple[dict[str, int], int]:
    """What the pools hold (VLAN IDs, prefix addresses) and how many of the site's ports are taken."""
    pools = {p.name: p.used for p in await inventory.pool_usage()}
    ports = sum(p.used for p in await inventory.port_usage() if p.site == site)
    return pools, ports


MERGE = """
mutation Merge($id: String!) { CoreProposedChangeMerge(data: {id: $id}, wait_until_completion: false) { ok } }
"""

CHANGE_STATE = """
query State($id: ID!) { CoreProposedChange(ids: [$id]) { edges { node { state { value } } } } }
"""


async def merge_in_infrahub(change_id: str, within_seconds: float = 420.0) -> None:
    """Merge a proposed change through Infrahub's own API, as an architect does in Infrahub's UI: no
    backend code runs, so nothing of ours has finished the merge when this returns. Infrahub puts a
    change back to open while its pipeline's checks are unfinished; the merge is then submitted again."""
    async with asyncio.timeout(within_seconds):
        while True:
            data = await sdk_query(CHANGE_STATE, {"id": change_id})
            state = data["CoreProposedChange"]["edges"][0]["node"]["state"]["value"]
            if state == "merged":
                return
            assert state in ("open", "merging"), state
            if state == "open":
                try:
                    await sdk_query(MERGE, {"id": change_id})
                except GraphQLError as exc:  # merging or merged meanwhile
                    if "open state" not in str(exc.errors).lower():
                        raise
            await asyncio.sleep(1.0)


# Parties that conclude one merged change at the same moment, as the flow's wait, the architect's
# CLI, reconciliation, an event-triggered resume and the generator can in production.
PARTIES = 3


async def conclude_at_once(
    inventory: InfrahubInventory, identifier: str, transition: Transition, branch: str
) -> None:
    """Conclude a merged change from ``inventory`` and ``PARTIES - 1`` other clients at once: each
    ends as concluding once does (no NODE_NOT_FOUND, nothing released twice)."""
    others = [InfrahubInventory.from_settings(InfrahubSettings()) for _ in range(PARTIES - 1)]
    try:
        outcomes = await asyncio.gather(
            *(lifecycle.conclude(identifier, transition, p, branch) for p in (inventory, *others)),
            return_exceptions=True,
        )
    finally:
        for other in others:
            await other.close()
    assert outcomes == [Outcome.DONE] * PARTIES, outcomes


@pytest.fixture(scope="session", autouse=True)
async def _forget_this_runs_branches() -> AsyncIterator[None]:
    """At the end, the branches this run left open (rejected deliveries keep theirs by design, the
    generator's test branches, lost races) are deleted: every open branch costs a diff update at every
    merge anybody makes on a shared Infrahub. Their proposed changes stay."""
    yield
    if not os.environ.get("INFRAHUB_ADDRESS"):
        return
    mark = f"it{_RUN}-"
    try:
        found = await sdk_query("query { Branch { name } }")
        for name in [b["name"] for b in found["Branch"] if mark in b["name"]]:
            await sdk_query(
                "mutation($n: String!) { BranchDelete(data: {name: $n}, wait_until_completion: false) { ok } }",
                {"n": name},
            )
    except Exception as exc:  # clean-up only: never fail the run for it
        print(f"could not delete this run's branches: {exc}")
