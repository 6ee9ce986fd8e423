"""The demo lifecycle on a fresh embedded inventory, through the Prefect flows: what a new user runs first."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rich.console import Console

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
    # The flows open the inventory from configuration, like a deployed worker would.
    os.environ["FACTORY_BACKEND"] = "embedded"
    os.environ["FACTORY_DB"] = str(db)
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    return asyncio.run(_lifecycle(inventory, console))


async def _lifecycle(inventory: EmbeddedInventory, console: Console) -> int:
    from flows import request_service as record
    from flows import run_transition

    try:
        with console.status("starting Prefect (ephemeral mode)...") as status:
            for identifier, account, site, bandwidth, package in DEMO_REQUESTS:
                status.update(
                    f"{identifier}: request, allocate on its branch, wait for the architect's merge..."
                )
                await record(
                    ServiceRequest(
                        service_identifier=identifier,
                        account_reference=account,
                        site=site,
                        bandwidth=bandwidth,
                        ip_package=package,
                    )
                )
                result = await run_transition("deliver", identifier, auto_approve=True)
                console.print(
                    f"deliver {identifier}: {result.outcome.value} (proposed change {result.proposed_change} "
                    f"on {result.branch}, merged by the architect)"
                )
        console.print(render.services_table(await inventory.list_services(MAIN), title="Delivered services"))
        console.print(render.pools_table(await inventory.pool_usage()))

        with console.status(f"{RETIRED}: releasing on its branch, waiting for the merge..."):
            result = await run_transition("decommission", RETIRED, auto_approve=True)
        console.print(f"decommission {RETIRED}: {result.outcome.value}, status {result.status.value}")
        console.print(render.pools_table(await inventory.pool_usage()))
        console.print(render.ports_table(await inventory.port_usage()))
        leaks = await inventory.leaks()
        console.print(f"leaks: {len(leaks)}" + ("" if not leaks else f" {leaks}"))
        return 1 if leaks else 0
    finally:
        await inventory.close()
