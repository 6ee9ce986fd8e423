"""What the network architect does: merge or close the proposed change a service waits on.

In production a person does this in Infrahub; these functions are the CLI's ``approve`` and
``reject``, the demo's and the tests' architect. Deciding concludes the transition at once (the
waiting flow run, reconciliation or an event may conclude it too: concluding is idempotent).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from allocation import attempts
from allocation.errors import AllocationError, InventoryUnavailable
from allocation.inventory import Inventory
from allocation.model import MAIN, ChangeState, ProposedChange
from allocation.results import TransitionResult
from allocation.runner import result, settle
from allocation.steps import Work, read_service
from allocation.transitions import Transition, underway

Decision = Literal["merge", "close"]


async def decide(
    identifier: str, decision: Decision, inventory: Inventory, *, by: str | None = None
) -> TransitionResult:
    """Merge or close the open proposed change of the service's transition, then conclude it;
    ``by`` names who decided where the inventory cannot tell (the embedded file)."""
    service = await read_service(inventory, identifier, MAIN)
    found = await underway(service, inventory)
    if found is None or found.change is None or found.change.state is not ChangeState.OPEN:
        raise AllocationError(f"{identifier} has no proposed change waiting for review")
    await _apply(found.change, decision, inventory, by)
    work = Work(identifier, found.transition, inventory, branch=found.branch)
    return await result(await settle(work))


async def when_open(
    identifier: str,
    transition: Transition,
    decision: Decision,
    inventory: Inventory,
    *,
    first_seconds: float = 0.02,
    ceiling_seconds: float = 2.0,
    by: str | None = None,
) -> ProposedChange:
    """Wait for the transition's proposed change to open, then merge (or close) it: the architect
    beside a run (``--auto-approve``). Polls fast on the embedded file, gently on Infrahub."""
    delay = first_seconds
    while True:
        try:
            attempt = await attempts.latest(identifier, transition.name, inventory)
        except InventoryUnavailable:
            attempt = None  # a busy source of truth dropped the read: look again
        if attempt is not None and attempt.change is not None and attempt.change.state is ChangeState.OPEN:
            return await _apply(attempt.change, decision, inventory, by)
        await asyncio.sleep(delay)
        delay = min(delay * 2, ceiling_seconds)


async def _apply(
    change: ProposedChange, decision: Decision, inventory: Inventory, by: str | None
) -> ProposedChange:
    if decision == "merge":
        return await inventory.merge_proposed_change(change.id, by=by)
    return await inventory.close_proposed_change(change.id, by=by)
