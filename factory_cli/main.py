"""factory: request, preview, review and retire Dedicated Internet services from a terminal.

Every command opens the inventory chosen by configuration (FACTORY_BACKEND, FACTORY_DB; see
allocation/settings.py), so the same commands drive the embedded file and a real Infrahub.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from allocation import lifecycle
from allocation.core import plan as make_plan
from allocation.errors import AllocationError, InventoryUnavailable
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.inventory import Inventory
from allocation.model import MAIN, ChangeState
from allocation.settings import FactorySettings, open_inventory
from factory_cli import render

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)
T = TypeVar("T")

DbOption = Annotated[Path | None, typer.Option("--db", help="embedded inventory file (default: FACTORY_DB)")]


def _settings(db: Path | None) -> FactorySettings:
    settings = FactorySettings()
    return settings.model_copy(update={"db": db}) if db is not None else settings


def run(db: Path | None, work: Callable[[Inventory], Awaitable[T]]) -> T:
    """Run one command against the configured inventory; turn known failures into a message and exit code."""

    async def main() -> T:
        inventory = open_inventory(_settings(db))
        try:
            return await work(inventory)
        finally:
            await inventory.close()

    try:
        return asyncio.run(main())
    except (AllocationError, ValidationError) as error:
        errors.print(f"[bold red]error:[/] {_message(error)}")
        raise typer.Exit(2) from None
    except InventoryUnavailable as error:
        errors.print(f"[bold red]inventory unavailable:[/] {error}")
        raise typer.Exit(3) from None


def run_flow(db: Path | None, label: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run lifecycle flows in-process (Prefect's ephemeral mode unless PREFECT_API_URL is set),
    with a spinner while they work and wait for review."""
    if db is not None:
        os.environ["FACTORY_DB"] = str(db)  # flows open the inventory from configuration
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    with console.status(label):
        return run(db, lambda _inventory: work())


def _message(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
    return str(error)


def _request(identifier: str, account: str, site: str, bandwidth: str, package: str) -> ServiceRequest:
    try:
        return ServiceRequest(
            service_identifier=identifier,
            account_reference=account,
            site=site,
            bandwidth=bandwidth,
            ip_package=package,
        )
    except ValidationError as error:
        errors.print(f"[bold red]invalid request:[/] {_message(error)}")
        raise typer.Exit(2) from None


@app.command()
def load(
    data: Annotated[Path | None, typer.Option(help="object files (default: the project's data/)")] = None,
    db: DbOption = None,
) -> None:
    """Load the bootstrap object files into the embedded inventory (idempotent)."""
    settings = _settings(db)
    if settings.backend != "embedded":
        errors.print("load is for the embedded backend; load Infrahub with `infrahubctl object load data/`")
        raise typer.Exit(2)
    from allocation.backends.embedded import EmbeddedInventory

    inventory = EmbeddedInventory(settings.db)
    counts = inventory.load(data or settings.data)
    console.print(
        f"loaded {sum(counts.values())} objects into {inventory.path}: {dict(sorted(counts.items()))}"
    )


@app.command()
def plan(
    identifier: str,
    site: Annotated[str, typer.Option()],
    bandwidth: Annotated[Bandwidth, typer.Option()],
    package: Annotated[IpPackage, typer.Option()],
    account: Annotated[str, typer.Option()] = "preview",
    db: DbOption = None,
) -> None:
    """Preview what a request would get. Reserves nothing."""
    request = _request(identifier, account, site, bandwidth.value, package.value)
    result = run(db, lambda inv: make_plan(request, inv))
    console.print(render.plan_table(result))


AutoApprove = Annotated[
    bool, typer.Option("--auto-approve", help="merge the proposed change as the architect")
]
Wait = Annotated[
    float | None,
    typer.Option(help="seconds to wait for the review [default: 0, or 600 with --auto-approve]"),
]


def _review_policy(auto_approve: bool, wait: float | None) -> Any:
    from flows import Review

    return Review(timeout_seconds=wait if wait is not None else (600 if auto_approve else 0))


@app.command()
def request(
    identifier: str,
    account: Annotated[str, typer.Option()],
    site: Annotated[str, typer.Option()],
    bandwidth: Annotated[Bandwidth, typer.Option()],
    package: Annotated[IpPackage, typer.Option()],
    auto_approve: AutoApprove = False,
    wait: Wait = None,
    db: DbOption = None,
) -> None:
    """Request a service: record it and run its delivery flow up to (or through) review."""
    service_request = _request(identifier, account, site, bandwidth.value, package.value)

    async def work() -> Any:
        from flows import request_service, run_transition

        await request_service(service_request)
        return await run_transition(
            "deliver",
            service_request.service_identifier,
            auto_approve=auto_approve,
            review=_review_policy(auto_approve, wait),
        )

    _report(run_flow(db, f"delivering {service_request.service_identifier}...", work))


@app.command()
def modify(
    identifier: str,
    bandwidth: Annotated[Bandwidth | None, typer.Option()] = None,
    package: Annotated[IpPackage | None, typer.Option()] = None,
    auto_approve: AutoApprove = False,
    wait: Wait = None,
    db: DbOption = None,
) -> None:
    """Change an active service's bandwidth or IP package through a reviewed change."""
    if bandwidth is None and package is None:
        errors.print("[bold red]error:[/] give --bandwidth and/or --package")
        raise typer.Exit(2)

    async def work() -> Any:
        from flows import run_transition

        return await run_transition(
            "modify",
            identifier,
            bandwidth=bandwidth,
            ip_package=package,
            auto_approve=auto_approve,
            review=_review_policy(auto_approve, wait),
        )

    _report(run_flow(db, f"modifying {identifier.upper()}...", work))


@app.command()
def decommission(
    identifier: str, auto_approve: AutoApprove = False, wait: Wait = None, db: DbOption = None
) -> None:
    """Retire a service: release its resources on a branch and open the proposed change."""

    async def work() -> Any:
        from flows import run_transition

        return await run_transition(
            "decommission", identifier, auto_approve=auto_approve, review=_review_policy(auto_approve, wait)
        )

    _report(run_flow(db, f"decommissioning {identifier.upper()}...", work))


@app.command()
def approve(identifier: str, db: DbOption = None) -> None:
    """As the architect: merge the service's open proposed change and finish its transition."""
    _review(identifier, db, merge=True)


@app.command()
def reject(identifier: str, db: DbOption = None) -> None:
    """As the architect: close the service's open proposed change; what its branch took is given back."""
    _review(identifier, db, merge=False)


def _review(identifier: str, db: Path | None, *, merge: bool) -> None:
    async def work(inventory: Inventory) -> str:
        current = await lifecycle.current_transition(identifier.upper(), inventory)
        if current is None or current[2].state is not ChangeState.OPEN:
            raise AllocationError(f"{identifier.upper()} has no proposed change waiting for review")
        transition, branch, change = current
        if merge:
            await inventory.merge_proposed_change(change.id)
        else:
            await inventory.close_proposed_change(change.id)
        outcome = await lifecycle.conclude(identifier.upper(), transition, inventory, branch)
        return f"{transition.name} of {identifier.upper()}: {outcome.value}"

    console.print(run(db, work))


@app.command("list")
def list_services(db: DbOption = None) -> None:
    """Every service on main with its resources."""
    services = run(db, lambda inv: inv.list_services(MAIN))
    console.print(render.services_table(services))


@app.command()
def show(identifier: str, db: DbOption = None) -> None:
    """One service, its resources and its proposed change."""

    async def work(inventory: Inventory) -> tuple[Any, Any]:
        service = await lifecycle.get_service(identifier.upper(), inventory)
        return service, await lifecycle.current_transition(identifier.upper(), inventory)

    service, current = run(db, work)
    console.print(render.services_table([service], title=service.service_identifier))
    if current is not None:
        transition, branch, change = current
        console.print(
            f"{transition.name} on branch [bold]{branch}[/]: proposed change {change.id} {change.state.value}"
        )
        console.print(change.description)


@app.command()
def capacity(db: DbOption = None) -> None:
    """Free customer ports per site and switch, and pool utilisation."""

    async def work(inventory: Inventory) -> tuple[Any, Any]:
        return await inventory.port_usage(), await inventory.pool_usage()

    ports, pools = run(db, work)
    console.print(render.ports_table(ports))
    console.print(render.pools_table(pools))


@app.command()
def demo(
    db: Annotated[Path, typer.Option(help="a fresh embedded inventory file, recreated")] = Path(
        ".factory/demo.sqlite3"
    ),
) -> None:
    """Load Otter-net, deliver a handful of services, approve them, decommission one, show the pools."""
    from factory_cli.demo import run_demo

    sys.exit(run_demo(db, console))


def _report(result: Any) -> None:
    """Print a flow's TransitionResult for service delivery."""
    console.print(
        f"{result.service_identifier}: {result.outcome.value}, status {result.status.value} ({result.message})"
    )
    if result.proposed_change is not None:
        console.print(f"proposed change {result.proposed_change} on branch [bold]{result.branch}[/]")
        if result.outcome.value == "waiting":
            console.print(f"an architect approves it with: factory approve {result.service_identifier}")
    if result.resources is not None:
        console.print(render.handover_table(result.service_identifier, result.resources))


if __name__ == "__main__":
    app()
