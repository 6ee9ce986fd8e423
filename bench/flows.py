"""Cost of running a transition as a Prefect flow over running the same declaration with plain calls.

Both sides do the same work on the embedded backend: deliver (allocate on a branch, proposed change,
merge) then decommission (release, proposed change, merge), one service at a time, with an architect
merging each proposed change as soon as it opens. The flow side records its runs on the Prefect
server PREFECT_API_URL names, or in Prefect's ephemeral mode without one; one warm-up cycle is left
out of the figures.

    python -m bench.flows --cycles 50
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

from allocation import intake
from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import ServiceRequest
from allocation.policy import TransitionName
from allocation.runner import Poll, run_transition
from allocation.settings import FactorySettings
from allocation.transitions import DECOMMISSION, DELIVER, TRANSITIONS

DATA = Path(__file__).resolve().parent.parent / "data"
SITES = ("par01", "lyn01", "ams01", "bru01")
MERGE_AT_ONCE = Poll(60, first_seconds=0.002, ceiling_seconds=0.01)


def request_for(number: int) -> ServiceRequest:
    return ServiceRequest(
        service_identifier=f"BENCH-{number:05d}",
        account_reference="ACC-BENCH",
        site=SITES[number % len(SITES)],
        bandwidth="1000",
        ip_package="small",
    )


async def _merging(
    identifier: str, name: TransitionName, inventory: EmbeddedInventory, run: Awaitable[object]
) -> None:
    from allocation import architect

    approver = asyncio.ensure_future(
        architect.when_open(
            identifier, TRANSITIONS[name], "merge", inventory, first_seconds=0.002, ceiling_seconds=0.01
        )
    )
    try:
        await run
    finally:
        approver.cancel()


async def bare_cycle(inventory: EmbeddedInventory, request: ServiceRequest) -> tuple[float, float]:
    identifier = request.service_identifier
    await intake.record(request, inventory)
    started = time.perf_counter()
    delivered = run_transition(DELIVER, identifier, inventory, wait=MERGE_AT_ONCE)
    await _merging(identifier, "deliver", inventory, delivered)
    middle = time.perf_counter()
    retired = run_transition(DECOMMISSION, identifier, inventory, wait=MERGE_AT_ONCE)
    await _merging(identifier, "decommission", inventory, retired)
    return middle - started, time.perf_counter() - middle


async def flow_cycle(inventory: EmbeddedInventory, request: ServiceRequest) -> tuple[float, float]:
    from flows.decommission import decommission
    from flows.deliver import deliver
    from flows.params import DecommissionParams, DeliverParams, LocalWait

    identifier = request.service_identifier
    local = LocalWait(seconds=60)
    await intake.record(request, inventory)
    started = time.perf_counter()
    run = deliver(DeliverParams(service_identifier=identifier), local)
    await _merging(identifier, "deliver", inventory, run)
    middle = time.perf_counter()
    run = decommission(DecommissionParams(service_identifier=identifier), local)
    await _merging(identifier, "decommission", inventory, run)
    return middle - started, time.perf_counter() - middle


async def measure(
    cycles: int, cycle: Callable[[ServiceRequest], Awaitable[tuple[float, float]]]
) -> list[tuple[float, float]]:
    await cycle(request_for(0))  # warm-up
    return [await cycle(request_for(n)) for n in range(1, cycles + 1)]


def fresh_inventory(directory: Path, name: str) -> Path:
    path = directory / f"{name}.sqlite3"
    inventory = EmbeddedInventory(path)
    inventory.load(DATA)
    return path


async def main(cycles: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bare_path = fresh_inventory(Path(tmp), "bare")
        inventory = EmbeddedInventory(bare_path)
        bare = await measure(cycles, lambda r: bare_cycle(inventory, r))
        await inventory.close()

        flows_path = fresh_inventory(Path(tmp), "flows")
        os.environ["FACTORY_DB"] = str(flows_path)
        assert FactorySettings().db is not None
        inventory = EmbeddedInventory(flows_path)
        flowed = await measure(cycles, lambda r: flow_cycle(inventory, r))
        await inventory.close()

    def ms(values: list[float]) -> tuple[float, float]:
        return statistics.mean(values) * 1000, statistics.median(values) * 1000

    where = os.environ.get("PREFECT_API_URL") or "Prefect's ephemeral mode"
    print(f"{cycles} deliver + decommission cycles, embedded backend, flows on {where}\n")
    print(
        f"{'transition':<14}{'bare mean':>11}{'flow mean':>11}{'flow p50':>10}{'overhead':>10}  (ms per run)"
    )
    for index, name in enumerate(("deliver", "decommission")):
        bare_mean, _ = ms([c[index] for c in bare])
        flow_mean, flow_median = ms([c[index] for c in flowed])
        print(
            f"{name:<14}{bare_mean:>11.1f}{flow_mean:>11.1f}{flow_median:>10.1f}{flow_mean - bare_mean:>10.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50)
    asyncio.run(main(parser.parse_args().cycles))
