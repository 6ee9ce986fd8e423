"""Load on a running Infrahub, to see how its task manager holds up: concurrent merges and branch churn.

Run it with the Python of the Infrahub venv (it has infrahub-sdk and httpx), after `stack start`:

    . .infrahub-stack/env
    "$INFRAHUB_STACK_VENV/bin/python" scripts/infrahub-stack/load.py --changes 4 --churn 2

One round: a webhook on `infrahub.proposed_change.merged` pointing at a receiver of this script
(its automation in the task manager is waited for), then K branches each with one new node and a
proposed change, their pipelines, and the K merges at the same time, while `--churn` loops create
and delete other branches. Afterwards it counts what the task manager did in that window: its flow
runs by state (failed and crashed ones named), the webhook deliveries received (K expected) and, in
the task manager's log, `database is locked`, the 503s it answered (logged when
PREFECT_API_LOG_RETRYABLE_ERRORS is on, as the stack sets it), 500s, failed automation actions and
messages sent to the dead letter queue. The nodes it creates are in the `Stackload` namespace; its
branches are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from infrahub_sdk import Config, InfrahubClient

SCHEMA = {
    "version": "1.0",
    "nodes": [
        {
            "name": "Item",
            "namespace": "Stackload",
            "label": "Stack load item",
            "human_friendly_id": ["name__value"],
            "attributes": [{"name": "name", "kind": "Text", "unique": True}],
        }
    ],
}

VALIDATIONS = """
query Validations($id: ID!) {
  CoreProposedChange(ids: [$id]) {
    edges { node { state { value } validations { edges { node { state { value } } } } } }
  }
}
"""
MERGE = """
mutation Merge($id: String!) {
  CoreProposedChangeMerge(data: {id: $id}, wait_until_completion: true) { ok }
}
"""
WEBHOOK = """
mutation Hook($name: String!, $url: String!) {
  CoreStandardWebhookCreate(data: {
    name: {value: $name}, url: {value: $url}, event_type: {value: "infrahub.proposed_change.merged"},
    branch_scope: {value: "all_branches"}, shared_key: {value: "stackload"}, active: {value: true}
  }) { object { id } }
}
"""
WEBHOOK_DELETE = "mutation Drop($id: String!) { CoreStandardWebhookDelete(data: {id: $id}) { ok } }"

LOG_PATTERNS = {
    "database is locked": re.compile(r"database is locked"),
    "503 answered (retryable error)": re.compile(r"Encountered retryable exception in request"),
    "500 answered": re.compile(r"Encountered exception in request"),
    "automation action failed": re.compile(r"Action failed: "),
    "message to dead letter queue": re.compile(r"moved to the dead letter queue"),
}
ACTION_FAILED = re.compile(r"Action failed: \"?(.*?)\"?(?:\x1b|$)")


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        try:
            event = str(json.loads(body).get("event", "?"))
        except ValueError:
            event = "?"
        with self.server.lock:
            self.server.events[event] += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class Load:
    def __init__(self, client: InfrahubClient, task_manager: str, run: str) -> None:
        self.client = client
        self.task_manager = task_manager
        self.run = run
        self.errors: list[str] = []
        self.timings: dict[str, list[float]] = {}

    def note(self, what: str, seconds: float) -> None:
        self.timings.setdefault(what, []).append(seconds)

    def error(self, where: str, err: BaseException | str) -> None:
        text = f"{where}: {type(err).__name__ if isinstance(err, BaseException) else ''} {err}".strip()
        self.errors.append(text[:400])
        print(f"  ERROR {text[:400]}", flush=True)

    async def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        data: dict[str, Any] = await self.client.execute_graphql(query=query, variables=variables)
        return data

    async def change(self, index: int, pipeline_seconds: float) -> None:
        """Branch, one node, proposed change, its pipeline, merge: as a reviewed change does."""
        name = f"stackload-{self.run}-{index}"
        where = f"change {index}"
        try:
            t = time.monotonic()
            await self.client.branch.create(branch_name=name, sync_with_git=False, wait_until_completion=True)
            self.note("branch create", time.monotonic() - t)
            item = await self.client.create(kind="StackloadItem", branch=name, name=name)
            await item.save()
            t = time.monotonic()
            pc = await self.client.create(
                kind="CoreProposedChange", name=name, source_branch=name, destination_branch="main"
            )
            await pc.save()
            self.note("proposed change create", time.monotonic() - t)
            t = time.monotonic()
            while True:
                data = await self.gql(VALIDATIONS, id=pc.id)
                node = data["CoreProposedChange"]["edges"][0]["node"]
                states = [e["node"]["state"]["value"] for e in node["validations"]["edges"]]
                if states and all(s == "completed" for s in states):
                    break
                if time.monotonic() - t > pipeline_seconds:
                    self.error(where, f"pipeline not completed after {pipeline_seconds:.0f}s: {states}")
                    return
                await asyncio.sleep(2)
            self.note("pipeline", time.monotonic() - t)
            t = time.monotonic()
            merged = await self.gql(MERGE, id=pc.id)
            self.note("merge", time.monotonic() - t)
            if not merged["CoreProposedChangeMerge"]["ok"]:
                self.error(where, f"merge answered {merged}")
            after = await self.client.get(kind="CoreProposedChange", id=pc.id)
            if after.state.value != "merged":
                self.error(where, f"proposed change state {after.state.value} after the merge")
            if not await self.client.get(
                kind="StackloadItem", name__value=name, branch="main", raise_when_missing=False
            ):
                self.error(where, "node not on main after the merge")
        except Exception as err:  # every failure is a figure of this load
            self.error(where, err)

    async def churn(self, index: int, stop: asyncio.Event) -> int:
        """Create a branch, write on it, delete it; again until stopped."""
        done = 0
        while not stop.is_set():
            name = f"stackload-{self.run}-churn{index}-{done}"
            try:
                t = time.monotonic()
                await self.client.branch.create(
                    branch_name=name, sync_with_git=False, wait_until_completion=True
                )
                item = await self.client.create(kind="StackloadItem", branch=name, name=name)
                await item.save()
                await self.client.branch.delete(name)
                self.note("churn cycle", time.monotonic() - t)
                done += 1
            except Exception as err:
                self.error(f"churn {index}", err)
                await asyncio.sleep(2)
        return done

    async def automation_ready(self, webhook: str, seconds: float) -> float | None:
        t = time.monotonic()
        async with httpx.AsyncClient(base_url=self.task_manager, timeout=30) as http:
            while time.monotonic() - t < seconds:
                try:
                    response = await http.post(
                        "/automations/filter",
                        json={"automations": {"name": {"any_": [f"webhook::{webhook}"]}}},
                    )
                    if response.status_code == 200 and response.json():
                        return time.monotonic() - t
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(2)
        return None

    async def flow_runs(self, since: str) -> list[dict[str, Any]]:
        """The runs due in the window (Prefect schedules cron runs ahead: those are left out)."""
        until = datetime.now(UTC).isoformat()
        runs: list[dict[str, Any]] = []
        async with httpx.AsyncClient(base_url=self.task_manager, timeout=60) as http:
            while True:
                response = await http.post(
                    "/flow_runs/filter",
                    json={
                        "flow_runs": {"expected_start_time": {"after_": since, "before_": until}},
                        "limit": 200,
                        "offset": len(runs),
                    },
                )
                response.raise_for_status()
                page = response.json()
                runs += page
                if len(page) < 200:
                    break
            flow_ids = sorted({r["flow_id"] for r in runs})
            names: dict[str, str] = {}
            for start in range(0, len(flow_ids), 200):
                response = await http.post(
                    "/flows/filter", json={"flows": {"id": {"any_": flow_ids[start : start + 200]}}}
                )
                response.raise_for_status()
                names.update({f["id"]: f["name"] for f in response.json()})
        for run in runs:
            run["flow_name"] = names.get(run["flow_id"], run["flow_id"])
        return runs


def log_counts(log: Path | None, offset: int) -> tuple[dict[str, int], Counter[str]]:
    counts = dict.fromkeys(LOG_PATTERNS, 0)
    actions: Counter[str] = Counter()
    if log is None or not log.exists():
        return counts, actions
    with log.open("rb") as fh:
        fh.seek(offset)
        for raw in fh:
            line = raw.decode(errors="replace")
            for what, pattern in LOG_PATTERNS.items():
                if pattern.search(line):
                    counts[what] += 1
            if "Action failed" in line:
                found = ACTION_FAILED.search(line)
                actions[found.group(1) if found else line.strip()[:120]] += 1
    return counts, actions


def failure(run: dict[str, Any]) -> str:
    """A failed run's state message, without the identifiers that make each one unique."""
    message = (run.get("state") or {}).get("message") or ""
    message = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", message)
    message = re.sub(r"stackload-[\w-]+", "<branch>", message)
    return message[:160]


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"n={len(values)} mean {statistics.mean(values):.1f}s median {statistics.median(values):.1f}s max {max(values):.1f}s"


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=4, help="proposed changes merged at the same time (K)")
    parser.add_argument("--churn", type=int, default=2, help="loops creating and deleting branches meanwhile")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for one pipeline")
    parser.add_argument("--settle", type=float, default=180, help="seconds to wait for the runs to finish")
    parser.add_argument("--log", type=Path, help="the task manager's log (default: $INFRAHUB_STACK_DIR/logs)")
    parser.add_argument("--json", type=Path, help="write the figures there")
    args = parser.parse_args()

    address = os.environ.get("INFRAHUB_ADDRESS", "http://127.0.0.1:8000")
    token = os.environ.get("INFRAHUB_API_TOKEN")
    task_manager = os.environ.get("INFRAHUB_STACK_TASK_MANAGER_URL", "http://127.0.0.1:4210/api")
    if not token:
        print("INFRAHUB_API_TOKEN is not set: source the stack's env file first", file=sys.stderr)
        return 2
    log = args.log
    if log is None and os.environ.get("INFRAHUB_STACK_DIR"):
        log = Path(os.environ["INFRAHUB_STACK_DIR"]) / "logs" / "task-manager.log"
    client = InfrahubClient(address=address, config=Config(api_token=token, timeout=900))
    run = time.strftime("%H%M%S")
    load = Load(client, task_manager, run)
    print(
        f"Infrahub {address}, task manager {task_manager}, K={args.changes}, churn={args.churn}, run {run}",
        flush=True,
    )

    response = await client.schema.load(schemas=[SCHEMA], wait_until_converged=True)
    if response.errors:
        print(f"schema load failed: {response.errors}", file=sys.stderr)
        return 1

    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"

    since = datetime.now(UTC).isoformat()
    offset = log.stat().st_size if log and log.exists() else 0
    started = time.monotonic()
    webhook_id = ""
    configured: float | None = None
    try:
        created = await load.gql(WEBHOOK, name=f"stackload-{run}", url=url)
        webhook_id = created["CoreStandardWebhookCreate"]["object"]["id"]
        configured = await load.automation_ready(webhook_id, 300)
        if configured is None:
            load.error("webhook", "its automation did not appear in 300 s")
    except Exception as err:
        load.error("webhook", err)

    stop = asyncio.Event()
    churners = [asyncio.create_task(load.churn(i, stop)) for i in range(args.churn)]
    t_changes = time.monotonic()
    await asyncio.gather(*(load.change(i, args.timeout) for i in range(args.changes)))
    changes_seconds = time.monotonic() - t_changes
    stop.set()
    cycles = sum(await asyncio.gather(*churners))

    # Deliveries and runs finish after the merges: wait for them, within --settle.
    deadline = time.monotonic() + args.settle
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = await load.flow_runs(since)
        busy = [r for r in runs if r["state_type"] in ("PENDING", "RUNNING", "SCHEDULED")]
        with receiver.lock:
            delivered = receiver.events["infrahub.proposed_change.merged"]
        if not busy and delivered >= args.changes:
            break
        await asyncio.sleep(5)
    elapsed = time.monotonic() - started
    runs = await load.flow_runs(since)
    counts, actions = log_counts(log, offset)
    with receiver.lock:
        delivered = receiver.events["infrahub.proposed_change.merged"]
    receiver.shutdown()

    states = Counter(r["state_type"] for r in runs)
    bad = Counter(
        f"{r['flow_name']} ({r['state_type']}): {failure(r)}"
        for r in runs
        if r["state_type"] in ("FAILED", "CRASHED")
    )
    print(
        f"\nwindow {elapsed:.0f}s; K={args.changes} changes in {changes_seconds:.0f}s; {cycles} churn cycles"
    )
    for what, values in load.timings.items():
        print(f"  {what:<24} {summary(values)}")
    print(f"  webhook automation       {f'{configured:.1f}s' if configured is not None else 'MISSING'}")
    print(f"  webhook deliveries       {delivered} of {args.changes}")
    print(f"  flow runs                {len(runs)} {dict(states)}")
    for name, n in bad.most_common():
        print(f"    failed/crashed         {n} x {name}")
    for what, n in counts.items():
        print(f"  log: {what:<30} {n}")
    for what, n in actions.most_common():
        print(f"    action failed          {n} x {what}")
    print(f"  client errors            {len(load.errors)}")
    for error in load.errors:
        print(f"    {error}")

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "changes": args.changes,
                    "churn": args.churn,
                    "window_seconds": round(elapsed, 1),
                    "changes_seconds": round(changes_seconds, 1),
                    "churn_cycles": cycles,
                    "timings": load.timings,
                    "webhook_automation_seconds": configured,
                    "webhook_deliveries": delivered,
                    "flow_runs": dict(states),
                    "failed_runs": dict(bad),
                    "log": counts,
                    "actions_failed": dict(actions),
                    "client_errors": load.errors,
                },
                indent=2,
            )
            + "\n"
        )

    # Clean up: the webhook and the merged branches.
    if webhook_id:
        try:
            await load.gql(WEBHOOK_DELETE, id=webhook_id)
        except Exception as err:
            print(f"  (webhook not deleted: {err})")
    for i in range(args.changes):
        try:
            await client.branch.delete(f"stackload-{run}-{i}")
        except Exception as err:
            print(f"  (branch stackload-{run}-{i} not deleted: {err})")
    return 0 if not load.errors and not bad and delivered >= args.changes else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
