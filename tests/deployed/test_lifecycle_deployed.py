"""A delivery as operators run it: deployments on the PostgreSQL Prefect server, a worker, the
review event; the embedded inventory behind them (the Infrahub version is test_lifecycle_on_infrahub).

Triggered through Prefect's REST API (twice, with one idempotency key), the delivery suspends on its
open proposed change; ``factory approve`` merges it and posts the review event; the event's
reconcile run resumes exactly that delivery, which completes with the service active. A request
through the request deployment starts its delivery by event; ``factory reject`` closes the change
and the run ends compensated, the service back to draft with nothing held.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun

from allocation import intake
from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import ServiceStatus
from allocation.model import MAIN
from tests.deployed.conftest import RUN, Deployed, eventually, parameters_of, requires_stack
from tests.support import DATA, ROOT, request

pytestmark = [pytest.mark.deployed, requires_stack]

# Distinct per run: the session's inventory file is shared by the deployed tests.
DELIVERED = f"DT{RUN % 10000}-0001"
REJECTED = f"DT{RUN % 10000}-0002"


def loaded(path: Path) -> Path:
    if not path.exists():
        EmbeddedInventory(path).load(DATA)
    return path


async def on_main(path: Path, identifier: str) -> Any:
    inventory = EmbeddedInventory(path)
    try:
        return await inventory.get_service(identifier, MAIN)
    finally:
        await inventory.close()


def factory(prefect_api: str, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=prefect_api, FACTORY_BACKEND="embedded", FACTORY_DB=str(db))
    return subprocess.run(
        [sys.executable, "-m", "factory_cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def state_of(client: PrefectClient, run: FlowRun) -> str:
    found = (await client.read_flow_run(run.id)).state
    return found.name if found is not None else "-"


async def runs_named(client: PrefectClient, deployed: Deployed, deployment: str, name: str) -> list[FlowRun]:
    return [r for r in await deployed.runs(client, deployment) if r.name == name]


async def test_a_delivery_triggered_by_the_api_resumes_on_the_review_event(
    deployed: Deployed, prefect: PrefectClient, prefect_api: str
) -> None:
    db = loaded(deployed.inventory)
    inventory = EmbeddedInventory(db)
    try:
        await intake.record(request(DELIVERED, site="par01"), inventory)
    finally:
        await inventory.close()

    # The API call, retried: one idempotency key, one run.
    body = {
        "parameters": {"params": {"service_identifier": DELIVERED}},
        "idempotency_key": f"deliver:{DELIVERED}:1",
    }
    async with httpx.AsyncClient(base_url=prefect_api) as http:
        first = await http.post(f"/deployments/{deployed.ids['deliver']}/create_flow_run", json=body)
        again = await http.post(f"/deployments/{deployed.ids['deliver']}/create_flow_run", json=body)
    assert first.status_code == 201 and again.status_code == 200, (first.text, again.text)
    assert first.json()["id"] == again.json()["id"]
    run = await prefect.read_flow_run(first.json()["id"])

    async def suspended() -> bool:
        return await state_of(prefect, run) == "Suspended"

    await eventually(suspended, 300, "the delivery suspended on its open proposed change")
    assert (await on_main(db, DELIVERED)).status is ServiceStatus.IN_DELIVERY

    approved_at = time.monotonic()
    approved = factory(prefect_api, db, "approve", DELIVERED)
    assert approved.returncode == 0, approved.stderr
    assert (await on_main(db, DELIVERED)).status is ServiceStatus.ACTIVE  # the merge itself

    async def completed() -> bool:
        return await state_of(prefect, run) == "Completed"

    await eventually(completed, 300, "the review event resumed the delivery, which completed")
    print(f"approve -> delivery run Completed: {time.monotonic() - approved_at:.1f}s")
    resumers = [
        r
        for r in await deployed.runs(prefect, "on-review")
        if parameters_of(r).get("branch") == f"{DELIVERED.lower()}-deliver"
    ]
    assert len(resumers) == 1
    assert len(await runs_named(prefect, deployed, "deliver", f"deliver {DELIVERED}")) == 1
    artifacts = await prefect.read_artifacts()
    handover = [a for a in artifacts if a.key == f"{DELIVERED.lower()}-deliver" and a.flow_run_id == run.id]
    assert handover and "VLAN" in str(handover[-1].data) and "done" in str(handover[-1].data)


async def test_a_request_by_event_and_a_rejection_leave_nothing_behind(
    deployed: Deployed, prefect: PrefectClient, prefect_api: str
) -> None:
    db = loaded(deployed.inventory)
    params = request(REJECTED, site="lyn01").model_dump(mode="json")
    created = await prefect.create_flow_run_from_deployment(
        deployed.ids["request"], parameters={"params": params}
    )

    async def delivery_suspended() -> FlowRun | None:
        runs = await runs_named(prefect, deployed, "deliver", f"deliver {REJECTED}")
        return runs[0] if runs and await state_of(prefect, runs[0]) == "Suspended" else None

    delivery = await eventually(
        delivery_suspended, 300, "the request's event started a delivery that suspended"
    )
    assert await state_of(prefect, created) == "Completed"

    rejected = factory(prefect_api, db, "reject", REJECTED)
    assert rejected.returncode == 0, rejected.stderr
    assert "rejected" in rejected.stdout

    async def completed() -> bool:
        return await state_of(prefect, delivery) == "Completed"

    await eventually(completed, 300, "the review event resumed the rejected delivery, which completed")
    service = await on_main(db, REJECTED)
    assert service.status is ServiceStatus.DRAFT and service.implementation.empty
    inventory = EmbeddedInventory(db)
    try:
        assert await inventory.leaks() == []
    finally:
        await inventory.close()
    await asyncio.sleep(0)
