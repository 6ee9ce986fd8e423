"""factory: request, preview, review and retire Dedicated Internet services from a terminal.

Every command opens the inventory chosen by configuration (FACTORY_BACKEND, FACTORY_DB; see
allocation/settings.py), so the same commands drive the embedded file and a real Infrahub. State
changes run the transitions declared in allocation/transitions.py: in this process with no Prefect
at all, or through the Prefect server PREFECT_API_URL names (flows/submit.py).
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from allocation import architect, history, intake, runner
from allocation.config import render_configs
from allocation.errors import AllocationError, InventoryUnavailable
from allocation.intent import Bandwidth, IpPackage, ServiceRequest, field_messages
from allocation.inventory import Inventory
from allocation.model import MAIN, ChangeState
from allocation.results import Outcome, TransitionResult
from allocation.settings import FactorySettings, open_inventory
from allocation.steps import Changes, read_service
from allocation.transitions import underway
from factory_cli import render

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False)
console = Console(width=None if sys.stdout.isatty() else 160)
T = TypeVar("T")

DbOption = Annotated[Path | None, typer.Option("--db", help="embedded inventory file (default: FACTORY_DB)")]
AutoApprove = Annotated[
    bool, typer.Option("--auto-approve", help="merge the proposed change as the architect")
]
Wait = Annotated[
    float | None,
    typer.Option(
        help="seconds to wait for the architect's decision [default: 0, or 600 with --auto-approve]"
    ),
]


class Refused(Exception):
    """A one-line refusal with its exit code: 2 for bad input, 3 for an unreachable server."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's own log lines")] = False,
) -> None:
    if not verbose:
        # Prefect logs a refusal inside a flow as an error with its traceback; the one useful line
        # is ours. Runs keep their full logs on the Prefect server.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL", "CRITICAL")
        logging.getLogger("prefect").setLevel(logging.CRITICAL)


def refuse(message: str, code: int = 2) -> typer.Exit:
    """Print one line on stderr, never wrapped, never read as markup."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.stderr.flush()
    return typer.Exit(code)


def _settings(db: Path | None) -> FactorySettings:
    settings = FactorySettings()
    if db is not None:
        os.environ["FACTORY_DB"] = str(db)  # flow runs in this process open the inventory from configuration
        return settings.model_copy(update={"db": db})
    return settings


def run(db: Path | None, work: Callable[[Inventory], Awaitable[T]]) -> T:
    """Run one command against the configured inventory; turn known failures into one line and an exit code."""

    async def go() -> T:
        inventory = open_inventory(_settings(db))
        try:
            return await work(inventory)
        finally:
            await inventory.close()

    try:
        return asyncio.run(go())
    except (AllocationError, ValidationError) as error:
        raise refuse(_message(error)) from None
    except InventoryUnavailable as error:
        raise refuse(f"inventory unavailable: {error}", 3) from None
    except Refused as error:
        raise refuse(str(error), error.code) from None
    except sqlite3.Error as error:
        raise refuse(f"inventory file unavailable: {error}", 3) from None
    except OSError as error:  # a file that cannot be opened, a connection refused
        raise refuse(f"unavailable: {error}", 3) from None
    except Exception as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403) and type(error).__module__.split(".")[0] in ("httpx", "prefect"):
            raise refuse(
                f"Prefect server at {os.environ.get('PREFECT_API_URL')} refused the credential ({status}): "
                "set PREFECT_API_AUTH_STRING to its auth string (scripts/prefect-stack/stack env)",
                3,
            ) from None
        if type(error).__module__.split(".")[0] in (
            "httpx",
            "httpcore",
        ):  # the Prefect server does not answer
            raise refuse(
                f"Prefect server unavailable at {os.environ.get('PREFECT_API_URL')}: {error}", 3
            ) from None
        raise


def _message(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in error.errors()
        )
    return str(error)


def _request(
    identifier: str, account: str, site: str, bandwidth: Bandwidth, package: IpPackage
) -> ServiceRequest:
    try:
        return ServiceRequest(
            service_identifier=identifier,
            account_reference=account,
            site=site,
            bandwidth=bandwidth,
            ip_package=package,
        )
    except ValidationError as error:
        hints = field_messages(error)
        raise refuse(
            "invalid request: " + "; ".join(f"{field}: {hint}" for field, hint in hints.items())
        ) from None


@app.command()
def load(
    data: Annotated[Path | None, typer.Option(help="object files (default: the project's data/)")] = None,
    db: DbOption = None,
) -> None:
    """Load the bootstrap object files into the embedded inventory (idempotent)."""
    settings = _settings(db)
    if settings.backend != "embedded":
        raise refuse("load is for the embedded backend; load Infrahub with scripts/infrahub-bootstrap")
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
    """Preview what a request would get. Reserves nothing; refuses what `request` would refuse."""
    request = _request(identifier, account, site, bandwidth, package)
    console.print(render.plan_table(run(db, lambda inv: intake.check(request, inv))))


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
    """Request a service: record it and run its delivery up to (or through) the architect's review."""
    service_request = _request(identifier, account, site, bandwidth, package)

    async def work(inventory: Inventory) -> TransitionResult:
        from flows import submit

        async def deliver(service: str) -> TransitionResult:
            return await submit.transition(
                "deliver", service, inventory, wait_seconds=wait or 0, auto_approve=auto_approve
            )

        return await intake.request_and_deliver(service_request, inventory, deliver, requested_by=_who())

    _report(_spinning(f"delivering {service_request.service_identifier}...", db, work))


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
        raise refuse("give --bandwidth and/or --package")
    changes = Changes(bandwidth=bandwidth, ip_package=package)
    _report(_transition("modify", identifier, db, changes=changes, auto_approve=auto_approve, wait=wait))


@app.command()
def decommission(
    identifier: str, auto_approve: AutoApprove = False, wait: Wait = None, db: DbOption = None
) -> None:
    """Retire a service: release its resources on a branch and open the proposed change."""
    _report(_transition("decommission", identifier, db, auto_approve=auto_approve, wait=wait))


def _transition(
    name: Any,
    identifier: str,
    db: Path | None,
    *,
    auto_approve: bool,
    wait: float | None,
    changes: Changes | None = None,
) -> TransitionResult:
    service = _identifier(identifier)

    async def work(inventory: Inventory) -> TransitionResult:
        from flows import submit

        return await submit.transition(
            name, service, inventory, changes=changes, wait_seconds=wait or 0, auto_approve=auto_approve
        )

    return _spinning(f"{name} {service}...", db, work)


def _identifier(identifier: str) -> str:
    from flows.params import ServiceRef

    try:
        return ServiceRef(service_identifier=identifier).service_identifier
    except ValidationError:
        raise refuse(f"invalid identifier {identifier!r}: must look like DIA-0042") from None


def _spinning(label: str, db: Path | None, work: Callable[[Inventory], Awaitable[T]]) -> T:
    if not sys.stderr.isatty():
        return run(db, work)
    with Console(stderr=True).status(label):
        return run(db, work)


@app.command()
def approve(identifier: str, db: DbOption = None) -> None:
    """As the architect: merge the service's open proposed change and finish its transition."""
    console.print(_decide(identifier, db, "merge"))


@app.command()
def reject(identifier: str, db: DbOption = None) -> None:
    """As the architect: close the service's open proposed change; what its branch took is given back."""
    console.print(_decide(identifier, db, "close"))


def _decide(identifier: str, db: Path | None, decision: architect.Decision) -> str:
    service = _identifier(identifier)

    async def work(inventory: Inventory) -> str:
        decided = await architect.decide(service, decision, inventory, by=_who())
        api = os.environ.get("PREFECT_API_URL")
        if api and decided.branch and decided.proposed_change:
            # What Infrahub's webhook sends when an architect decides there: the reconcile
            # deployment's trigger resumes the run waiting on this branch.
            await _announce(
                api, decided.branch, "merged" if decision == "merge" else "closed", decided.proposed_change
            )
        return f"{decided.transition} of {service}: {decided.outcome.value} ({decided.message})"

    return run(db, work)


async def _announce(api: str, branch: str, state: Literal["merged", "closed"], change_id: str) -> None:
    import httpx

    from deployments.events import proposed_change_event
    from deployments.webhooks import basic_authorization

    event = proposed_change_event(branch, state, change_id, source="factory")
    # The server's credential (PREFECT_SERVER_API_AUTH_STRING), as Prefect's own clients send it.
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    headers = {"Authorization": basic_authorization(auth)} if auth else {}
    async with httpx.AsyncClient(timeout=10, headers=headers) as client:
        (await client.post(f"{api.rstrip('/')}/events", json=[event])).raise_for_status()


def _who() -> str:
    """Who runs the command, as recorded with a request or a decision on the embedded file (Infrahub
    records the account of the API token instead)."""
    return os.environ.get("FACTORY_USER") or getpass.getuser()


@app.command("list")
def list_services(db: DbOption = None) -> None:
    """Every service on main with its resources."""
    console.print(render.services_table(run(db, lambda inv: inv.list_services(MAIN))))


@app.command()
def reopen(identifier: str, db: DbOption = None) -> None:
    """Re-open the proposed change a service waits on with a fresh plan (after its branch was edited)."""
    service = _identifier(identifier)
    _report(run(db, lambda inventory: runner.reopen(service, inventory)))


ConfigOption = Annotated[
    bool, typer.Option("--config", help="the configuration the service puts on its switch and router")
]


@app.command()
def show(identifier: str, config: ConfigOption = False, db: DbOption = None) -> None:
    """One service, its resources and the proposed change it waits on."""
    service_id = _identifier(identifier)

    async def work(inventory: Inventory) -> tuple[Any, Any, Any, Any]:
        service = await read_service(inventory, service_id)
        found = await underway(service, inventory)
        proposed = None
        if (
            config
            and found is not None
            and found.change is not None
            and found.change.state is ChangeState.OPEN
        ):
            proposed = await read_service(inventory, service_id, found.branch)
        return service, found, proposed, await history.decisions(service_id, inventory)

    service, found, proposed, decisions = run(db, work)
    console.print(render.services_table([service], title=service.service_identifier))
    console.print(f"requested by {service.requested_by or 'unknown'}", markup=False)
    if decisions:
        console.print(render.decisions_table(decisions))
    if config:
        _print_configs(render_configs(service), "on main")
    if found is not None and found.change is not None:
        console.print(
            f"{found.transition.name} on branch {found.branch}: proposed change {found.change.id} {found.change.state.value}",
            markup=False,
        )
        if proposed is not None:
            _print_configs(render_configs(proposed), f"proposed on {found.branch}")
        console.print(found.change.description, markup=False)


def _print_configs(configs: dict[str, str], where: str) -> None:
    if not configs:
        console.print(f"configuration {where}: none (the service holds no port and no gateway)", markup=False)
    for device, text in configs.items():
        console.print(f"configuration of {device} {where}:", markup=False)
        console.print(text, markup=False, highlight=False)


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


def _report(result: TransitionResult) -> None:
    """A run's result for service delivery."""
    console.print(
        f"{result.service_identifier}: {result.outcome.value}, status {result.status.value} ({result.message})",
        markup=False,
    )
    if result.proposed_change is not None:
        console.print(f"proposed change {result.proposed_change} on branch {result.branch}", markup=False)
        if result.outcome is Outcome.WAITING:
            console.print(
                f"an architect approves it with: factory approve {result.service_identifier}", markup=False
            )
    if result.resources is not None:
        console.print(render.handover_table(result.service_identifier, result.resources))


accounts_app = typer.Typer(
    no_args_is_help=True, help="The portal's local accounts (embedded backend; on Infrahub, Infrahub's own)."
)
app.add_typer(accounts_app, name="accounts")
AccountsFile = Annotated[
    Path | None,
    typer.Option("--file", help="accounts file (default: FACTORY_ACCOUNTS or ~/.local/share/...)"),
]


@accounts_app.command("add")
def accounts_add(
    name: str,
    role: Annotated[list[str], typer.Option("--role", help="delivery, architect or viewer (repeatable)")],
    password_stdin: Annotated[bool, typer.Option(help="read the password from standard input")] = False,
    file: AccountsFile = None,
) -> None:
    """Create an account (or give an existing one a new password and roles)."""
    from portal import accounts

    try:
        roles = [accounts.Role(r) for r in role]
    except ValueError:
        raise refuse(f"unknown role in {role}: choose {', '.join(r.value for r in accounts.Role)}") from None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    path = file or accounts.path_from_env()
    try:
        account = accounts.add(path, name, password, roles)
    except accounts.AccountError as error:
        raise refuse(str(error)) from None
    console.print(f"{account.name}: {', '.join(r.value for r in account.roles)} in {path}", markup=False)


@accounts_app.command("list")
def accounts_list(file: AccountsFile = None) -> None:
    """Every account and its roles (never a password or a hash)."""
    from portal import accounts

    path = file or accounts.path_from_env()
    found = accounts.load(path)
    if not found:
        console.print(f"no account in {path}", markup=False)
    for account in found.values():
        console.print(f"{account.name}: {', '.join(r.value for r in account.roles)}", markup=False)


@accounts_app.command("remove")
def accounts_remove(name: str, file: AccountsFile = None) -> None:
    """Remove an account: its sessions end at their next request."""
    from portal import accounts

    if not accounts.remove(file or accounts.path_from_env(), name):
        raise refuse(f"no account {name!r}")
    console.print(f"{name} removed", markup=False)


if __name__ == "__main__":
    app()
