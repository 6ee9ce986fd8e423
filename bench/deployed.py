"""Figures of the deployed shape (scripts/prefect-stack): start time and memory of PostgreSQL +
the Prefect server, review event -> reconcile run created, and worker pickup at several
PREFECT_WORKER_QUERY_SECONDS. Reported, never asserted.

    python -m bench.deployed --events 10 --runs 6 --query-seconds 10 2 1

It stops and starts the stack of this checkout (scripts/prefect-stack/stack), deploys a copy of
the catalog's reconcile deployment (``reconcile-bench``, its own embedded inventory, no schedule)
and deletes it afterwards. Timestamps are the server's own (event received, run created, state
times), so the figures leave out the client's polling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from deployments.catalog import catalog
from deployments.events import proposed_change_event
from deployments.render import render
from deployments.webhooks import basic_authorization

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "scripts" / "prefect-stack" / "stack"
SUFFIX = "-bench"


def stack(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(STACK), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return done.stdout


def api_client(api: str, **kwargs: Any) -> httpx.AsyncClient:
    """A client of the stack's API, with its credential (PREFECT_API_AUTH_STRING, from `stack env`)."""
    return httpx.AsyncClient(
        base_url=api,
        headers={"Authorization": basic_authorization(os.environ["PREFECT_API_AUTH_STRING"])},
        **kwargs,
    )


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"p50 {statistics.median(values):.2f}s, mean {statistics.fmean(values):.2f}s, "
        f"min {min(values):.2f}s, max {max(values):.2f}s (n={len(values)})"
    )


def cold_start() -> None:
    stack("stop")
    began = time.monotonic()
    out = stack("start", "--db", "postgres", "--workers", "1")
    total = time.monotonic() - began
    healthy = dict(re.findall(r"\] (\S+): healthy \(([\d.]+)s\)", out))
    print(f"cold start (data folder exists): {total:.1f}s; healthy after {healthy}")
    print(stack("status"))


def deploy_yaml(text: str, api: str, auth: str) -> None:
    """``prefect deploy --all`` of a rendered prefect.yaml, as an operator runs it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prefect.yaml"
        path.write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        subprocess.run(
            [
                str(Path(sys.executable).parent / "prefect"),
                "--no-prompt",
                "deploy",
                "--all",
                "--prefect-file",
                str(path),
            ],
            cwd=ROOT,
            env={**env, "PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": auth},
            check=True,
            capture_output=True,
        )


def prefect_deploy(api: str, inventory: Path) -> None:
    """The catalog's reconcile, deployed as the real one is (render, then prefect deploy)."""
    (reconcile,) = [d for d in catalog() if d.name == "reconcile"]
    text = render([reconcile], name_suffix=SUFFIX, job_variables={"env": {"FACTORY_DB": str(inventory)}})
    deploy_yaml(text, api, os.environ["PREFECT_API_AUTH_STRING"])


async def deploy(api: str, inventory: Path) -> str:
    await asyncio.to_thread(prefect_deploy, api, inventory)
    async with api_client(api) as http:
        found = (await http.get(f"/deployments/name/reconcile/reconcile{SUFFIX}")).json()
        for schedule in found["schedules"]:
            await http.patch(f"/deployments/{found['id']}/schedules/{schedule['id']}", json={"active": False})
    return str(found["id"])


async def wait_run(http: httpx.AsyncClient, deployment: str, branch: str) -> dict[str, Any]:
    while True:
        runs = (
            await http.post(
                "/flow_runs/filter", json={"deployments": {"id": {"any_": [deployment]}}, "limit": 200}
            )
        ).json()
        for run in runs:
            if (run["parameters"].get("params") or {}).get("branch") == branch:
                return dict(run)
        await asyncio.sleep(0.1)


async def received(http: httpx.AsyncClient, event_id: str) -> dict[str, Any]:
    """The event as the server recorded it (written in batches, a moment after triggers saw it)."""
    while True:
        query = {"filter": {"id": {"id": [event_id]}}, "limit": 1}
        found = (await http.post("/events/filter", json=query)).json()["events"]
        if found:
            return dict(found[0])
        await asyncio.sleep(0.2)


async def event_to_run(api: str, deployment: str, count: int) -> None:
    latencies = []
    async with api_client(api) as http:
        for _ in range(count):
            branch = f"bench-{uuid.uuid4().hex[:8]}"
            event = proposed_change_event(branch, "merged", str(uuid.uuid4()), source="bench")
            assert (await http.post("/events", json=[event])).status_code == 204
            run = await wait_run(http, deployment, branch)
            recorded = await received(http, event["id"])
            latencies.append(ts(run["created"]) - ts(recorded["received"]))
            await asyncio.sleep(random.uniform(0.5, 2.0))
    print(f"review event received -> reconcile run created: {summary(latencies)}")


async def state_times(http: httpx.AsyncClient, run_id: str) -> dict[str, float]:
    while True:
        states = (await http.get("/flow_run_states/", params={"flow_run_id": run_id})).json()
        names = {s["name"]: ts(s["timestamp"]) for s in states}
        if "Completed" in names or "Failed" in names or "Crashed" in names:
            return names
        await asyncio.sleep(0.5)


async def drained(api: str, deployment: str) -> None:
    """Every run of the deployment finished: the event-triggered ones queue behind its
    concurrency limit and would be counted as pickup time otherwise."""
    query = {
        "deployments": {"id": {"any_": [deployment]}},
        "flow_runs": {"state": {"type": {"not_any_": ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]}}},
    }
    async with api_client(api) as http:
        while True:
            if not (await http.post("/flow_runs/filter", json=query)).json():
                return
            await asyncio.sleep(1)


async def pickup(api: str, deployment: str, runs: int, query_seconds: str) -> None:
    await drained(api, deployment)
    stack("stop", "worker-1")
    stack(
        "start",
        "--db",
        "postgres",
        "--workers",
        "1",
        env={"PREFECT_STACK_WORKER_QUERY_SECONDS": query_seconds},
    )
    await asyncio.sleep(3)
    picked, started, total = [], [], []
    async with api_client(api, timeout=30) as http:
        for _ in range(runs):
            await asyncio.sleep(random.uniform(0, float(query_seconds)))  # not in step with the poll
            run = (await http.post(f"/deployments/{deployment}/create_flow_run", json={})).json()
            names = await state_times(http, run["id"])
            created = ts(run["created"])
            picked.append(names["Pending"] - created)
            started.append(names["Running"] - names["Pending"])
            total.append(names["Completed"] - created)
    print(f"PREFECT_WORKER_QUERY_SECONDS={query_seconds}:")
    print(f"  run created -> worker picks it up (Pending): {summary(picked)}")
    print(f"  picked up -> flow running (new process, imports): {summary(started)}")
    print(f"  run created -> Completed: {summary(total)}")


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.deployed", description=__doc__)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--query-seconds", nargs="+", default=["10", "2", "1"])
    parser.add_argument("--no-cold-start", action="store_true")
    args = parser.parse_args()
    if not args.no_cold_start:
        cold_start()
    client_env = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in stack("env").splitlines()
        if line.startswith("export ")
    )
    api = client_env["PREFECT_API_URL"]
    os.environ["PREFECT_API_AUTH_STRING"] = client_env["PREFECT_API_AUTH_STRING"]
    with tempfile.TemporaryDirectory() as folder:
        deployment = await deploy(api, Path(folder) / "inventory.sqlite3")
        try:
            await event_to_run(api, deployment, args.events)
            for seconds in args.query_seconds:
                await pickup(api, deployment, args.runs, seconds)
        finally:
            async with api_client(api) as http:
                await http.delete(f"/automations/owned-by/prefect.deployment.{deployment}")
                await http.delete(f"/deployments/{deployment}")
            stack("stop", "worker-1")
            stack("start", "--db", "postgres", "--workers", "1")


if __name__ == "__main__":
    asyncio.run(main())
