"""What every lifecycle flow shares: the inventory session, run names, the final result."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from prefect.runtime import flow_run

from allocation import lifecycle
from allocation.inventory import Inventory
from allocation.settings import open_inventory
from flows import tasks
from flows.params import Handover, Outcome, TransitionResult


@asynccontextmanager
async def inventory_session() -> AsyncIterator[Inventory]:
    """One inventory per flow run, chosen by configuration (FACTORY_BACKEND, FACTORY_DB)."""
    inventory = open_inventory()
    try:
        yield inventory
    finally:
        await inventory.close()


def run_name(verb: str) -> Callable[[], str]:
    """Flow run names such as "deliver DIA-0042", whatever shape the parameters arrive in."""

    def name() -> str:
        params: dict[str, Any] = flow_run.get_parameters()
        value = next(iter(params.values()), None)
        identifier = getattr(value, "service_identifier", None)
        if identifier is None and isinstance(value, dict):
            identifier = value.get("service_identifier")
        return f"{verb} {identifier}" if identifier else verb

    return name


_MESSAGES = {
    Outcome.DONE: "{id} is {status}",
    Outcome.REJECTED: "the proposed change was closed: {id} is back to {status}, nothing it took on {branch} is kept",
    Outcome.WAITING: "the proposed change is still open: {id} stays {status} until it is merged or closed",
}


async def finish(
    identifier: str,
    transition: lifecycle.Transition,
    inventory: Inventory,
    outcome: Outcome,
    branch: str | None,
    change_id: str | None,
    message: str | None = None,
) -> TransitionResult:
    service = await tasks.read_service(identifier, inventory)
    return TransitionResult(
        service_identifier=identifier,
        transition=transition.name,
        outcome=outcome,
        status=service.status,
        branch=branch,
        proposed_change=change_id,
        message=message
        or _MESSAGES[outcome].format(id=identifier, status=service.status.value, branch=branch),
        resources=Handover.of(service) if outcome is not Outcome.REJECTED else None,
    )
