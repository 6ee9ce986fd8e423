"""Concluding one merged change from several parties at once ends the same as concluding it once.

In production the flow's wait, the architect's CLI, reconciliation, an event-triggered resume and the
generator can all see a proposed change merged at the same moment and each finish the transition.
Here three inventories (three clients, as three processes would have) conclude the same change
concurrently, once after the delivery's merge (claims become main's) and once after the
decommission's merge (reservations deleted, deferred VLAN deleted, branch deleted). The change is
merged through Infrahub's own API, as an architect would in Infrahub's UI, so no party has finished
it before the three start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from allocation.backends.infrahub import InfrahubInventory
from allocation.settings import InfrahubSettings
from tests import lifecycle
from tests.integration.conftest import merge_in_infrahub, requires_infrahub, sdk_query
from tests.support import request

pytestmark = [pytest.mark.integration, requires_infrahub]

SITE = "lyn01"
PARTIES = 3

# What the service holds, read through Infrahub's own GraphQL: per service, so that other clients of
# a shared Infrahub allocating at the same time do not disturb the count.
HELD = """
query Held($identifier: String!, $vlan: String!, $branches: [String]) {
  ServiceReservation(service_identifier__value: $identifier) {
    edges { node { kind { value } resource { value } claimed_on { value } released_on { value } } }
  }
  IpamVLAN(name__value: $vlan) { count }
  Branch { name }
  CoreProposedChange(source_branch__values: $branches) { edges { node { state { value } } } }
}
"""


async def held(identifier: str, branches: list[str]) -> dict[str, Any]:
    return await sdk_query(
        HELD, {"identifier": identifier, "vlan": f"vlan__{identifier}", "branches": branches}
    )


async def test_three_parties_conclude_one_merged_change_as_if_once(new_id: Callable[[], str]) -> None:
    identifier = new_id()
    parties = [InfrahubInventory.from_settings(InfrahubSettings()) for _ in range(PARTIES)]
    first = parties[0]
    branches: list[str] = []
    try:
        await lifecycle.request_service(request(identifier, site=SITE), first)
        for transition in (lifecycle.DELIVER, lifecycle.DECOMMISSION):
            change = await lifecycle.prepare(identifier, transition, first)
            assert change is not None
            branches.append(change.branch)
            await merge_in_infrahub(change.id)
            outcomes = await asyncio.gather(
                *(lifecycle.conclude(identifier, transition, party, change.branch) for party in parties),
                return_exceptions=True,
            )
            assert outcomes == [lifecycle.Outcome.DONE] * PARTIES, outcomes
            service = await lifecycle.get_service(identifier, first)
            assert service.status is transition.target
            found = await held(identifier, branches)
            records = [r["node"] for r in found["ServiceReservation"]["edges"]]
            if transition is lifecycle.DELIVER:
                impl = service.implementation
                assert impl.complete and impl.port and impl.prefix
                # Each resource recorded once, as main's: the claims the branch made were taken over.
                resources = sorted(r["resource"]["value"] for r in records)
                assert f"port:{impl.port.port.id}" in resources and f"prefix:{impl.prefix}" in resources
                assert len(resources) == len(set(resources))
                assert {(r["claimed_on"]["value"], r["released_on"]["value"]) for r in records} == {
                    ("main", None)
                }
                assert found["IpamVLAN"]["count"] == 1
            else:
                assert service.implementation.empty
                assert records == []  # every reservation given back
                assert found["IpamVLAN"]["count"] == 0  # the deferred VLAN deleted from main
            if transition is lifecycle.DECOMMISSION:  # a delivery's branch is deleted in the background
                assert not {b["name"] for b in found["Branch"]} & set(branches)  # merged branches deleted
            states = [c["node"]["state"]["value"] for c in found["CoreProposedChange"]["edges"]]
            assert states == ["merged"] * len(branches)
    finally:
        for party in parties:
            await party.close()
