"""GraphQL round trips and seconds per service, per lifecycle phase, on a live Infrahub.

Delivers and decommissions a few services through the transition declarations the flows run
(every declared step, measured through the runner's executor), counting the HTTP requests the
Infrahub backend sends in each step, then the architect's merge and the conclusion.

    INFRAHUB_ADDRESS=http://127.0.0.1:8000 INFRAHUB_API_TOKEN=... python -m bench.infrahub_roundtrips --services 3
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from allocation import intake, runner
from allocation.backends.infrahub import InfrahubInventory
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.settings import InfrahubSettings
from allocation.steps import Step, Work
from allocation.transitions import DECOMMISSION, DELIVER

T = TypeVar("T")
SITES = ("lyn01", "par01", "ams01")


class Meter:
    def __init__(self, inventory: InfrahubInventory) -> None:
        self.inventory = inventory
        self.trips: dict[str, list[int]] = defaultdict(list)
        self.seconds: dict[str, list[float]] = defaultdict(list)

    async def measure(self, phase: str, step: Callable[[], Awaitable[T]]) -> T:
        trips, started = self.inventory.round_trips, time.perf_counter()
        result = await step()
        self.trips[phase].append(self.inventory.round_trips - trips)
        self.seconds[phase].append(time.perf_counter() - started)
        return result

    def report(self) -> None:
        print(f"{'phase':<36}{'round trips':>12}{'seconds':>10}   (mean per service)")
        total_trips, total_seconds = 0.0, 0.0
        for phase in self.trips:
            trips = sum(self.trips[phase]) / len(self.trips[phase])
            seconds = sum(self.seconds[phase]) / len(self.seconds[phase])
            total_trips, total_seconds = total_trips + trips, total_seconds + seconds
            print(f"{phase:<36}{trips:>12.1f}{seconds:>10.2f}")
        print(f"{'total':<36}{total_trips:>12.1f}{total_seconds:>10.2f}")


async def lifecycle_of(meter: Meter, request: ServiceRequest) -> None:
    inventory, identifier = meter.inventory, request.service_identifier
    await meter.measure("request", partial(intake.record, request, inventory))
    for transition in (DELIVER, DECOMMISSION):
        name = transition.name

        async def metered(step: Step, work: Work, name: str = name) -> Work:
            return await meter.measure(f"{name}: {step.name}", partial(step, work))

        work = await runner.run(Work(identifier, transition, inventory), execute=metered)
        assert work.change is not None
        await meter.measure(f"{name}: merge + conclude", partial(merge, work, work.change.id))


async def merge(work: Work, change_id: str) -> None:
    await work.inventory.merge_proposed_change(change_id)
    assert (await runner.settle(work)).outcome is not None


async def main(count: int) -> None:
    inventory = InfrahubInventory.from_settings(InfrahubSettings())
    meter = Meter(inventory)
    run = int(time.time()) % 100000
    try:
        await inventory.get_site(SITES[0])  # the catalog, read once per inventory
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
    print(f"{count} services delivered and decommissioned on {inventory.address}")
    meter.report()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=3)
    asyncio.run(main(parser.parse_args().services))
