"""The production path end to end: the native Infrahub, the PostgreSQL Prefect server and a worker.

Two deliveries are triggered through Prefect's REST API (the first twice, with one idempotency key:
one run); each opens its proposed change in Infrahub and suspends. An architect merges one and
closes the other through Infrahub's GraphQL; Infrahub's webhooks post the review events to Prefect,
whose on-review runs resume exactly those deliveries, with nobody running reconcile. The merged
service is active on main in Infrahub; the closed one is back to draft and holds nothing.

The delivered service stays active (a decommission would cost one more merge, minutes on this
machine; the flows' own Infrahub test decommissions under ``make test-slow``, and ``make test``
decommissions on Infrahub in the crash test).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import PrefectClient

from allocation import intake
from allocation.backends.infrahub import InfrahubInventory
from allocation.intent import Bandwidth, ServiceStatus
from allocation.model import MAIN
from allocation.settings import InfrahubSettings
from deployments import events
from tests.deployed.conftest import RUN, Deployed, PrefectApi, eventually, parameters_of, requires_stack
from tests.deployed.infrahub_support import (
    change_of,
    close,
    drop_branch,
    gql,
    infrahub_client,
    merge,
    received,
    webhooks_to_prefect,
)
from tests.integration.conftest import requires_infrahub
from tests.support import request

pytestmark = [pytest.mark.integration, pytest.mark.deployed, requires_infrahub, requires_stack]

MERGED = f"DI{RUN % 10000}-0001"
CLOSED = f"DI{RUN % 10000}-0002"

# Deadlines, not targets: Infrahub's merge task and its webhook each take about a minute on a busy
# 2-core machine, and the worker starts a process per run.
WITHIN = 600


async def state_of(client: PrefectClient, run_id: Any) -> str:
    found = (await client.read_flow_run(run_id)).state
    return found.name if found is not None else "-"


async def roomiest_site(inventory: InfrahubInventory) -> str:
    """The site with the most free 100M ports: the Infrahub is shared by every test of the session."""
    free = {
        site: len(await inventory.free_ports(site, Bandwidth.M100.mbps))
        for site in await inventory.list_sites()
    }
    site = max(free, key=lambda s: free[s])
    assert free[site] >= 2, f"no site has two free ports left: {free}"
    return site


async def reservations_of(identifier: str) -> int:
    found = await gql(
        infrahub_client(),
        "query Held($id: String!) { ServiceReservation(service_identifier__value: $id) { count } }",
        id=identifier,
    )
    count: int = found["ServiceReservation"]["count"]
    return count


async def test_deliveries_triggered_by_the_api_resume_on_infrahub_merges_and_closes(
    deployed_on_infrahub: Deployed, prefect: PrefectClient, prefect_api: PrefectApi, tmp_path: Path
) -> None:
    deployed = deployed_on_infrahub
    client = infrahub_client()
    inventory = InfrahubInventory.from_settings(InfrahubSettings())
    branches = {MERGED: f"{MERGED.lower()}-deliver", CLOSED: f"{CLOSED.lower()}-deliver"}
    try:
        async with webhooks_to_prefect(client, prefect_api, tmp_path, RUN):
            site = await roomiest_site(inventory)
            for identifier in (MERGED, CLOSED):
                await intake.record(request(identifier, site=site, bandwidth=Bandwidth.M100), inventory)

            runs: dict[str, Any] = {}
            async with prefect_api.http() as http:
                for identifier in (MERGED, CLOSED, MERGED):  # the first call retried
                    body = {
                        "parameters": {"params": {"service_identifier": identifier}},
                        "idempotency_key": f"deliver:{identifier}:1",
                    }
                    answer = await http.post(
                        f"/deployments/{deployed.ids['deliver']}/create_flow_run", json=body
                    )
                    assert answer.status_code in (200, 201), answer.text
                    runs.setdefault(identifier, answer.json()["id"])
                    assert runs[identifier] == answer.json()["id"], "a retried trigger made a second run"

            async def both_suspended() -> bool:
                states = [await state_of(prefect, r) for r in runs.values()]
                assert "Failed" not in states and "Crashed" not in states, states
                return states == ["Suspended", "Suspended"]

            triggered_at = time.monotonic()
            await eventually(both_suspended, WITHIN, "both deliveries suspended on their proposed changes")
            print(f"trigger -> both suspended: {time.monotonic() - triggered_at:.1f}s")
            changes = {i: await change_of(client, b) for i, b in branches.items()}
            assert all(c is not None and c[1] == "open" for c in changes.values()), changes
            service = await inventory.get_service(MERGED, MAIN)
            assert service is not None and service.status is ServiceStatus.IN_DELIVERY

            to_merge, to_close = changes[MERGED], changes[CLOSED]
            assert to_merge is not None and to_close is not None
            await close(client, to_close[0])
            await merge(client, to_merge[0])
            merged_at = time.monotonic()

            async def both_completed() -> bool:
                states = [await state_of(prefect, r) for r in runs.values()]
                assert "Failed" not in states and "Crashed" not in states, states
                return states == ["Completed", "Completed"]

            await eventually(both_completed, WITHIN, "the review events resumed both deliveries")
            print(f"merge finished -> both deliveries Completed: {time.monotonic() - merged_at:.1f}s")
    finally:
        for branch in branches.values():
            await drop_branch(client, branch)

    try:
        # The review events came from Infrahub's webhooks, with the changes' branches.
        merged_event = await received(prefect_api, events.MERGED, branches[MERGED])
        closed_event = await received(prefect_api, events.CLOSED, branches[CLOSED])
        assert merged_event is not None and merged_event["payload"]["source"] == "infrahub"
        assert closed_event is not None and closed_event["resource"][events.STATE_LABEL] == "closed"
        resumers = {parameters_of(r).get("branch") for r in await deployed.runs(prefect, "on-review")}
        assert set(branches.values()) <= resumers
        assert len(await deployed.runs(prefect, "deliver")) == 2

        delivered = await inventory.get_service(MERGED, MAIN)
        assert delivered is not None and delivered.status is ServiceStatus.ACTIVE
        assert delivered.implementation.vlan is not None and delivered.implementation.port is not None
        compensated = await inventory.get_service(CLOSED, MAIN)
        assert compensated is not None and compensated.status is ServiceStatus.DRAFT
        assert compensated.implementation.empty
        assert await reservations_of(CLOSED) == 0
    finally:
        await inventory.close()
