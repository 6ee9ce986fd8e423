"""The demo lifecycle on a fresh embedded inventory: what a new user runs first.

With PREFECT_API_URL set (``make demo`` starts or reuses one local Prefect server) every transition
runs as a Prefect flow recorded there, so its runs, tasks and waits show in the UI; without it the
same declarations run in this process with no Prefect at all.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rich.console import Console

from allocation import intake
from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.model import MAIN
from allocation.settings import FactorySettings
from factory_cli import render
from flows import submit

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
    # Flow runs open the inventory from configuration, as a deployed worker would.
    os.environ["FACTORY_BACKEND"] = "embedded"
    os.environ["FACTORY_DB"] = str(db.resolve())
    return asyncio.run(_lifecycle(inventory, console))


async def _lifecycle(inventory: EmbeddedInventory, console: Console) -> int:
    api = os.environ.get("PREFECT_API_URL")
    console.print(
        f"Prefect: every transition runs as a flow on {api}"
        if api
        else "Prefect: not configured, the plain runner"
    )
    try:
        for identifier, account, site, bandwidth, package in DEMO_REQUESTS:
            request = ServiceRequest(
                service_identifier=identifier,
                account_reference=account,
                site=site,
                bandwidth=bandwidth,
                ip_package=package,
            )
            await intake.record(request, inventory)
            result = await submit.transition("deliver", identifier, inventory, auto_approve=True)
            console.print(
                f"deliver {identifier}: {result.outcome.value} (proposed change {result.proposed_change} "
                f"on {result.branch}, merged by the architect)",
                markup=False,
            )
        console.print(render.services_table(await inventory.list_services(MAIN), title="Delivered services"))
        console.print(render.pools_table(await inventory.pool_usage()))

        result = await submit.transition("decommission", RETIRED, inventory, auto_approve=True)
        console.print(f"decommission {RETIRED}: {result.outcome.value}, status {result.status.value}")
        console.print(render.pools_table(await inventory.pool_usage()))
        console.print(render.ports_table(await inventory.port_usage()))
        leaks = await inventory.leaks()
        console.print(f"leaks: {len(leaks)}" + ("" if not leaks else f" {leaks}"), markup=False)
        if api:
            console.print(f"See the runs in the Prefect UI: {api.removesuffix('/api')}/runs", markup=False)
        return 1 if leaks else 0
    finally:
        await inventory.close()
