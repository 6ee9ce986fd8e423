"""Delivery throughput of the deployed shape with 1, 2 and 4 process workers, and the two latencies
operators feel: API trigger -> proposed change open, and the architect's merge -> run Completed.
Reported, never asserted.

    python -m bench.deployed_throughput --services 8 --workers 1 2 4

Uses the PostgreSQL stack of this checkout (scripts/prefect-stack/stack; it converges on the
asked number of workers) with the catalog deployed under names ending ``-tput``, an embedded
inventory of its own per round, and an architect that merges each change as soon as it is open
and posts the review event, as ``factory approve`` does. The copies are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from allocation import architect, attempts, intake
from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.model import ChangeState
from allocation.transitions import DELIVER
from bench.deployed import deploy_yaml
from deployments.catalog import catalog
from deployments.events import proposed_change_event
from deployments.render import render
from deployments.webhooks import basic_authorization

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "scripts" / "prefect-stack" / "stack"
SUFFIX = "-tput"
DONE = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def stack(*args: str) -> str:
    return subprocess.run(
        [sys.executable, str(STACK), *args], capture_output=True, text=True, check=True
    ).stdout


@dataclasses.dataclass(frozen=True)
class Api:
    url: str
    auth: str  # the stack's credential (PREFECT_API_AUTH_STRING)

    @classmethod
    def of_stack(cls) -> Api:
        found = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1)
            for line in stack("env").splitlines()
            if line.startswith("export ")
        )
        return cls(found["PREFECT_API_URL"], found["PREFECT_API_AUTH_STRING"])

    def headers(self) -> dict[str, str]:
        return {"Authorization": basic_authorization(self.auth)}


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"p50 {statistics.median(values):.1f}s, max {max(values):.1f}s (n={len(values)})"


def deploy(api: Api, inventory: Path) -> dict[str, str]:
    specs = [dataclasses.replace(d, tags=(*d.tags, "bench")) for d in catalog()]
    text = render(
        specs,
        name_suffix=SUFFIX,
        job_variables={"env": {"FACTORY_BACKEND": "embedded", "FACTORY_DB": str(inventory)}},
    )
    deploy_yaml(text, api.url, api.auth)
    ids = {}
    with httpx.Client(base_url=api.url, headers=api.headers(), timeout=30) as http:
        names = [spec.name + SUFFIX for spec in specs]
        found = http.post("/deployments/filter", json={"deployments": {"name": {"any_": names}}}).json()
        for deployment in found:
            ids[deployment["name"].removesuffix(SUFFIX)] = str(deployment["id"])
            for schedule in deployment["schedules"]:  # the sweep stays off: only the events resume
                http.patch(
                    f"/deployments/{deployment['id']}/schedules/{schedule['id']}", json={"active": False}
                )
    return ids


def remove(api: Api, ids: dict[str, str]) -> None:
    with httpx.Client(base_url=api.url, headers=api.headers(), timeout=30) as http:
        for deployment in ids.values():
            http.delete(f"/automations/owned-by/prefect.deployment.{deployment}")
            http.delete(f"/deployments/{deployment}")


async def architect_beside(
    inventory: EmbeddedInventory,
    api: Api,
    services: list[str],
    opened: dict[str, float],
    decided: dict[str, float],
) -> None:
    """Merge each delivery's change as soon as it is open, and post the review event."""
    async with httpx.AsyncClient(base_url=api.url, headers=api.headers(), timeout=30) as http:
        while len(decided) < len(services):
            for identifier in services:
                if identifier in decided:
                    continue
                attempt = await attempts.latest(identifier, DELIVER.name, inventory)
                if attempt.change is None or attempt.change.state is not ChangeState.OPEN:
                    continue
                opened[identifier] = time.time()
                result = await architect.decide(identifier, "merge", inventory, by="bench")
                decided[identifier] = time.time()
                assert result.branch and result.proposed_change
                event = proposed_change_event(result.branch, "merged", result.proposed_change, source="bench")
                (await http.post("/events", json=[event])).raise_for_status()
            await asyncio.sleep(0.2)


async def one_round(api: Api, workers: int, count: int) -> None:
    stack("start", "--db", "postgres", "--workers", str(workers))
    folder = Path(tempfile.mkdtemp(prefix="tput-"))
    path = folder / "inventory.sqlite3"
    inventory = EmbeddedInventory(path)
    inventory.load(ROOT / "data")
    ids = await asyncio.to_thread(deploy, api, path)
    try:
        sites = await inventory.list_sites()
        services = [f"TP{workers}-{n:04d}" for n in range(1, count + 1)]
        for n, identifier in enumerate(services):
            request = ServiceRequest(
                service_identifier=identifier,
                account_reference="ACC-BENCH",
                site=sites[n % len(sites)],
                bandwidth=Bandwidth.M100,
                ip_package=IpPackage.SMALL,
            )
            await intake.record(request, inventory)
        opened: dict[str, float] = {}
        decided: dict[str, float] = {}
        runs: dict[str, dict[str, Any]] = {}
        began = time.time()
        async with httpx.AsyncClient(base_url=api.url, headers=api.headers(), timeout=30) as http:
            for identifier in services:
                body = {"parameters": {"params": {"service_identifier": identifier}}}
                runs[identifier] = (
                    await http.post(f"/deployments/{ids['deliver']}/create_flow_run", json=body)
                ).json()
            watching = asyncio.create_task(architect_beside(inventory, api, services, opened, decided))
            finished: dict[str, dict[str, Any]] = {}
            while len(finished) < len(services):
                for identifier, run in runs.items():
                    if identifier not in finished:
                        found = (await http.get(f"/flow_runs/{run['id']}")).json()
                        if found["state"]["type"] in DONE:
                            finished[identifier] = found
                await asyncio.sleep(0.5)
            watching.cancel()
        wall = max(ts(f["end_time"]) for f in finished.values()) - began
        states = [f["state"]["name"] for f in finished.values()]
        to_open = [opened[i] - ts(runs[i]["created"]) for i in services if i in opened]
        to_done = [ts(finished[i]["end_time"]) - decided[i] for i in services if i in decided]
        print(
            f"{workers} worker(s), {count} deliveries: {wall:.0f}s, {count / wall * 60:.1f} services/min; states {sorted(set(states))}"
        )
        print(f"  API trigger -> proposed change open: {summary(to_open)}")
        print(f"  merge + review event -> run Completed: {summary(to_done)}")
    finally:
        await inventory.close()
        await asyncio.to_thread(remove, api, ids)


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.deployed_throughput", description=__doc__)
    parser.add_argument("--services", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    api = Api.of_stack()
    for workers in args.workers:
        await one_round(api, workers, args.services)


if __name__ == "__main__":
    asyncio.run(main())
