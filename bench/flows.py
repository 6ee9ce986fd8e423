"""Cost of running the lifecycle as Prefect flows over calling the lifecycle steps directly.

Both sides do the same work on the embedded backend: deliver (allocate on a branch, proposed change,
merge) then decommission (release, proposed change, merge), one service at a time. The flow side
runs in Prefect's ephemeral mode with an architect merging each proposed change as soon as it opens;
one warm-up cycle (ephemeral server start) is left out of the figures.

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

from allocation import core, lifecycle
from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import ServiceRequest
from allocation.settings import FactorySettings

DATA = Path(__file__).resolve().parent.parent / "data"
SITES = ("par01", "lyn01", "ams01", "bru01")


def request_for(number: int) -> ServiceRequest:
    return ServiceRequest(
        service_identifier=f"BENCH-{number:05d}",
        account_reference="ACC-BENCH",
        site=SITES[number % len(SITES)],
        bandwidth="1000",
        ip_package="small",
    )


async def bare_cycle(inventory: EmbeddedInventory, request: ServiceRequest) -> tuple[float, float]:
    identifier = request.service_identifier
    await lifecycle.request_service(request, inventory)
    started = time.perf_counter()
    branch = await lifecycle.begin(identifier, lifecycle.DELIVER, inventory)
    assert branch is not None
    await core.apply(await lifecycle.plan_on_branch(identifier, inventory, branch), inventory, branch)
    await lifecycle.mark_target(identifier, lifecycle.DELIVER, inventory, branch)
    change = await lifecycle.request_review(identifier, lifecycle.DELIVER, inventory, branch)
    await inventory.merge_proposed_change(change.id)
    assert (
        await lifecycle.conclude(identifier, lifecycle.DELIVER, inventory, branch) is lifecycle.Outcome.DONE
    )
    delivered = time.perf_counter()
    branch = await lifecycle.begin(identifier, lifecycle.DECOMMISSION, inventory)
    assert branch is not None
    await core.release(identifier, inventory, branch)
    await lifecycle.mark_target(identifier, lifecycle.DECOMMISSION, inventory, branch)
    change = await lifecycle.request_review(identifier, lifecycle.DECOMMISSION, inventory, branch)
    await inventory.merge_proposed_change(change.id)
    await lifecycle.conclude(identifier, lifecycle.DECOMMISSION, inventory, branch)
    return delivered - started, time.perf_counter() - delivered


async def flow_cycle(request: ServiceRequest) -> tuple[float, float]:
    import flows

    review = flows.Review(poll_seconds=0.002, max_poll_seconds=0.01)
    await flows.request_service(request)
    started = time.perf_counter()
    result = await flows.run_transition(
        "deliver", request.service_identifier, auto_approve=True, review=review
    )
    assert result.outcome is flows.Outcome.DONE
    delivered = time.perf_counter()
    result = await flows.run_transition(
        "decommission", request.service_identifier, auto_approve=True, review=review
    )
    assert result.outcome is flows.Outcome.DONE
    return delivered - started, time.perf_counter() - delivered


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

        os.environ["FACTORY_DB"] = str(fresh_inventory(Path(tmp), "flows"))
        assert FactorySettings().db is not None
        flowed = await measure(cycles, flow_cycle)

    def ms(values: list[float]) -> tuple[float, float]:
        return statistics.mean(values) * 1000, statistics.median(values) * 1000

    print(f"{cycles} deliver + decommission cycles, embedded backend, Prefect ephemeral mode\n")
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
