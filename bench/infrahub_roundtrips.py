"""GraphQL round trips and seconds per service, per lifecycle phase, on a live Infrahub.

Delivers and decommissions a few services through the transition declarations the flows run (every
declared step, measured through the runner's executor), counting the HTTP requests the Infrahub backend sends
in each phase with its own counting requester, and reading from Infrahub's task manager the tasks
each phase waited on (branch creation, merge, branch deletion): how long they were queued and ran.
It also runs the delivery's steps once more on its branch (a rerun that finds everything in place).

The merge is reported apart: its request waits for Infrahub's merge task, and is sent again while
Infrahub refuses it (the proposed change's pipeline still running).

    INFRAHUB_ADDRESS=http://127.0.0.1:8000 INFRAHUB_API_TOKEN=... python -m bench.infrahub_roundtrips --services 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from allocation import intake, runner
from allocation.backends.infrahub import InfrahubInventory
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.results import Outcome
from allocation.settings import InfrahubSettings
from allocation.steps import Step, Work
from allocation.transitions import DECOMMISSION, DELIVER
from bench.infrahub_tasks import TaskManager, TaskRun

T = TypeVar("T")
SITES = ("lyn01", "par01", "ams01")
MERGE = "merge"
AGAIN = " again"  # a phase measured apart, not part of a lifecycle


@dataclass
class Phase:
    trips: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    task_run: list[float] = field(default_factory=list)
    task_queued: list[float] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)
    tasks: list[str] = field(default_factory=list)


class Meter:
    def __init__(self, inventory: InfrahubInventory, tasks: TaskManager) -> None:
        self.inventory = inventory
        self.tasks = tasks
        self.phases: dict[str, Phase] = defaultdict(Phase)

    async def measure(self, phase: str, step: Callable[[], Awaitable[T]], *related: str) -> T:
        """Run ``step``; then read the Infrahub tasks whose name mentions one of ``related``."""
        trips, ops = self.inventory.round_trips, Counter(self.inventory.operations)
        since = datetime.now(UTC) - timedelta(seconds=1)
        started, cpu = time.perf_counter(), time.process_time()
        result = await step()
        record = self.phases[phase]
        record.seconds.append(time.perf_counter() - started)
        record.cpu.append(time.process_time() - cpu)
        record.trips.append(self.inventory.round_trips - trips)
        record.operations.update(Counter(self.inventory.operations) - ops)
        runs: list[TaskRun] = await self.tasks.runs(*related, since=since) if related else []
        record.task_run.append(sum(r.run_seconds for r in runs))
        record.task_queued.append(sum(r.queued_seconds for r in runs))
        record.tasks += [f"{r.flow} ({r.run_seconds:.1f}s run, {r.queued_seconds:.1f}s queued)" for r in runs]
        return result

    def table(self) -> dict[str, dict[str, Any]]:
        def mean(values: list[float] | list[int]) -> float:
            return sum(values) / len(values) if values else 0.0

        return {
            name: {
                "requests": round(mean(p.trips), 2),
                "seconds": round(mean(p.seconds), 2),
                "client_cpu_seconds": round(mean(p.cpu), 3),
                "infrahub_task_run_seconds": round(mean(p.task_run), 2),
                "infrahub_task_queued_seconds": round(mean(p.task_queued), 2),
                "operations_per_service": {
                    k: round(v / max(1, len(p.trips)), 2) for k, v in p.operations.items()
                },
                "infrahub_tasks": p.tasks,
            }
            for name, p in self.phases.items()
        }

    def report(self) -> None:
        table = self.table()
        print(f"{'phase':<28}{'requests':>9}{'seconds':>9}{'task run':>10}{'queued':>8}   (mean per service)")
        totals = {"lifecycle": [0.0, 0.0], "merge": [0.0, 0.0]}
        for name, row in table.items():
            print(
                f"{name:<28}{row['requests']:>9.1f}{row['seconds']:>9.2f}"
                f"{row['infrahub_task_run_seconds']:>10.1f}{row['infrahub_task_queued_seconds']:>8.1f}"
            )
            if name.endswith(AGAIN):
                continue
            bucket = "merge" if name.endswith(MERGE) else "lifecycle"
            totals[bucket][0] += row["requests"]
            totals[bucket][1] += row["seconds"]
        for bucket, (trips, seconds) in totals.items():
            print(f"{'total ' + bucket:<28}{trips:>9.1f}{seconds:>9.2f}")


async def lifecycle_of(meter: Meter, request: ServiceRequest) -> None:
    """Request, then deliver and decommission through the declarations (every declared step measured
    through the runner's executor), the architect's merge and the conclusion apart."""
    inventory, identifier = meter.inventory, request.service_identifier
    await meter.measure("request", partial(intake.record, request, inventory))
    for transition in (DELIVER, DECOMMISSION):
        name = transition.name

        async def metered(step: Step, work: Work, name: str = name) -> Work:
            related = [f"Create branch {identifier.lower()}-{name}"] if step.name == "begin" else []
            return await meter.measure(f"{name}: {step.name}", partial(step, work), *related)

        work = await runner.run(Work(identifier, transition, inventory), execute=metered)
        assert work.change is not None and work.branch is not None
        if transition is DELIVER:  # a rerun of the steps that finds everything in place
            again = replace(work, change=None)
            for step in transition.steps:
                again = await meter.measure(f"{name}: {step.name} again", partial(step, again))
        await meter.measure(
            f"{name}: {MERGE}",
            partial(inventory.merge_proposed_change, work.change.id),
            f"Merge propose change: {name.capitalize()} {identifier}",
            f"Delete branch {work.branch}",
            f"Merge branch {work.branch}",
        )
        settled = await meter.measure(f"{name}: conclude", partial(runner.settle, work))
        assert settled.outcome is Outcome.DONE, settled.outcome


async def main(count: int) -> Meter:
    inventory = InfrahubInventory.from_settings(InfrahubSettings())
    inventory.merge_timeout = 1800.0  # a shared, busy Infrahub: merges queue behind its global merge lock
    tasks = TaskManager()
    meter = Meter(inventory, tasks)
    run = int(time.time()) % 100000
    started = time.perf_counter()
    try:
        for n in range(count):
            request = ServiceRequest(
                service_identifier=f"BR{run}-{n:04d}",
                account_reference=f"ACC-{n}",
                site=SITES[n % len(SITES)],
                bandwidth=Bandwidth.G1,
                ip_package=(IpPackage.SMALL, IpPackage.MEDIUM)[n % 2],
            )
            await lifecycle_of(meter, request)
    finally:
        await inventory.close()
        await tasks.close()
    print(
        f"{count} services delivered and decommissioned on {inventory.address} in {time.perf_counter() - started:.0f}s"
    )
    meter.report()
    return meter


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    arguments = parser.parse_args()
    measured = asyncio.run(main(arguments.services))
    if arguments.json is not None:
        arguments.json.write_text(
            json.dumps({"services": arguments.services, "phases": measured.table()}, indent=2)
        )
