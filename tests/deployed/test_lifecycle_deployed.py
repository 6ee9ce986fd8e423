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
from deployments.webhooks import basic_authorization
from tests.deployed.conftest import (
    RUN,
    Deployed,
    PrefectApi,
    eventually,
    parameters_of,
    requires_stack,
)
from tests.support import ROOT, request

pytestmark = [pytest.mark.deployed, requires_stack]

# Distinct per run: the session's inventory file is shared by the deployed tests.
DELIVERED = f"DT{RUN % 10000}-0001"
REJECTED = f"DT{RUN % 10000}-0002"


async def on_main(path: Path, identifier: str) -> Any:
    inventory = EmbeddedInventory(path)
    try:
        return await inventory.get_service(identifier, MAIN)
    finally:
        await inventory.close()


def factory(prefect_api: PrefectApi, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(prefect_api.env(), FACTORY_BACKEND="embedded", FACTORY_DB=str(db))
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
    deployed: Deployed, prefect: PrefectClient, prefect_api: PrefectApi
) -> None:
    db = deployed.inventory
    assert db is not None
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
    async with prefect_api.http() as http:
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
    deployed: Deployed, prefect: PrefectClient, prefect_api: PrefectApi
) -> None:
    db = deployed.inventory
    assert db is not None
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


def secrets_in_use(prefect_api: PrefectApi) -> dict[str, str]:
    """Every credential this run used: the Prefect API's (as set and as sent), Infrahub's token the
    worker inherits, the stack's PostgreSQL password."""
    found = {
        "PREFECT_API_AUTH_STRING": prefect_api.auth,
        "its password part": prefect_api.auth.split(":", 1)[-1],
        "the Authorization header": basic_authorization(prefect_api.auth).split()[1],
    }
    if os.environ.get("INFRAHUB_API_TOKEN"):
        found["INFRAHUB_API_TOKEN"] = os.environ["INFRAHUB_API_TOKEN"]
    password = stack_dir() / "postgres-password"
    if password.exists():
        found["the PostgreSQL password"] = password.read_text().strip()
    return found


def stack_dir() -> Path:
    return Path(os.environ.get("PREFECT_STACK_DIR") or ROOT / ".prefect-stack")


async def test_no_credential_in_the_logs_or_on_the_flow_run_pages(
    deployed: Deployed, prefect: PrefectClient, prefect_api: PrefectApi
) -> None:
    """After the deliveries above (run in this module's order): what an operator can read, the stack's
    log files and what the UI's flow-run pages show, holds none of the credentials in use."""
    runs = [r for name in deployed.ids for r in await deployed.runs(prefect, name)]
    delivered = [r for r in runs if r.name == f"deliver {DELIVERED}" and r.state and r.state.is_completed()]
    assert delivered, "the delivery test runs first in this module: nothing to look at"
    ids = [str(r.id) for r in runs]
    shown: dict[str, str] = {}
    async with prefect_api.http(timeout=60) as http:

        async def read(what: str, method: str, path: str, body: object = None) -> None:
            response = await http.request(method, path, json=body)
            assert response.status_code == 200, (what, response.text)
            shown[what] = response.text

        for run_id in ids:  # the flow-run page: the run (parameters, job variables, state), its tasks
            await read(f"flow run {run_id}", "GET", f"/flow_runs/{run_id}")
        pages: list[str] = []
        while True:  # every page of the runs' logs
            query = {"logs": {"flow_run_id": {"any_": ids}}, "offset": 200 * len(pages), "limit": 200}
            page = await http.post("/logs/filter", json=query)
            assert page.status_code == 200, page.text
            pages.append(page.text)
            if len(page.json()) < 200:
                break
        shown["logs"] = "".join(pages)
        await read("task runs", "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": ids}}})
        await read("artifacts", "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": ids}}})
        for name, deployment_id in deployed.ids.items():
            await read(f"deployment {name}", "GET", f"/deployments/{deployment_id}")
        await read("work pool", "GET", "/work_pools/service-factory")
        ui = httpx.URL(prefect_api.url).copy_with(path="/ui-settings")
        shown["ui settings"] = (await http.get(ui)).text
    for log in sorted((stack_dir() / "logs").glob("*.log")):
        shown[str(log)] = log.read_text(errors="replace")
    assert "deliver" in shown["logs"] and f'"{DELIVERED}"' in shown[f"flow run {delivered[0].id}"]
    leaks = [
        (where, what)
        for where, text in shown.items()
        for what, secret in secrets_in_use(prefect_api).items()
        if secret in text
    ]
    print(
        f"searched {len(shown)} sources, {sum(map(len, shown.values()))} characters, for {len(secrets_in_use(prefect_api))} credentials"
    )
    assert leaks == []
