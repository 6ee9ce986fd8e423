"""The demo lifecycle on a fresh embedded inventory: what a new user runs first."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console

from allocation import lifecycle
from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.model import MAIN
from allocation.settings import FactorySettings
from factory_cli import render

DEMO_REQUESTS = (
    ("DIA-0001", "ACC-1001", "par01", Bandwidth.G1, IpPackage.SMALL),
    ("DIA-0002", "ACC-1002", "par01", Bandwidth.G10, IpPackage.MEDIUM),
    ("DIA-0003", "ACC-1003", "lyn01", Bandwidth.M100, IpPackage.LARGE),
    ("DIA-0004", "ACC-1004", "bru01", Bandwidth.G1, IpPackage.SMALL),
    ("DIA-0005", "ACC-1005", "ams01", Bandwidth.G10, IpPackage.SMALL),
)
RETIRED = "DIA-0002"


def run_demo(db: Path, console: Console) -> int:
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    inventory = EmbeddedInventory(db)
    counts = inventory.load(FactorySettings().data)
    console.print(f"[bold]Otter-net loaded[/] into {db}: {sum(counts.values())} objects")
    return asyncio.run(_lifecycle(inventory, console))


async def _lifecycle(inventory: EmbeddedInventory, console: Console) -> int:
    try:
        for identifier, account, site, bandwidth, package in DEMO_REQUESTS:
            request = ServiceRequest(
                service_identifier=identifier,
                account_reference=account,
                site=site,
                bandwidth=bandwidth,
                ip_package=package,
            )
            await lifecycle.request_service(request, inventory)
            await _through_review(identifier, lifecycle.DELIVER, inventory, console)
        console.print(render.services_table(await inventory.list_services(MAIN), title="Delivered services"))
        before = await inventory.pool_usage()
        console.print(render.pools_table(before))

        await _through_review(RETIRED, lifecycle.DECOMMISSION, inventory, console)
        retired = await lifecycle.get_service(RETIRED, inventory)
        console.print(render.services_table([retired], title=f"{RETIRED} after decommission"))
        console.print(render.pools_table(await inventory.pool_usage()))
        console.print(render.ports_table(await inventory.port_usage()))
        leaks = await inventory.leaks()
        console.print(f"leaks: {len(leaks)}" + ("" if not leaks else f" {leaks}"))
        return 1 if leaks else 0
    finally:
        await inventory.close()


async def _through_review(
    identifier: str, transition: lifecycle.Transition, inventory: EmbeddedInventory, console: Console
) -> None:
    change = await lifecycle.prepare(identifier, transition, inventory)
    if change is None:
        return
    console.print(f"{transition.name} {identifier}: proposed change {change.id} on {change.branch}, approved")
    await inventory.merge_proposed_change(change.id)
    await lifecycle.conclude(identifier, transition, inventory, change.branch)
