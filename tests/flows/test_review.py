"""What the architect decides: a closed proposed change leaves nothing behind; an open one waits."""

from __future__ import annotations

import asyncio
from typing import Any

from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import Bandwidth, IpPackage, ServiceStatus
from allocation.model import ChangeState
from allocation.results import Outcome, TransitionResult
from allocation.transitions import DECOMMISSION, DELIVER, MODIFY, Transition
from tests.flows.conftest import (
    architect,
    deliver_directly,
    dia,
    on_main,
    reconcile_now,
    request_service,
    run_transition,
    usage,
)


async def _run_rejected(transition: Transition, **kwargs: Any) -> TransitionResult:
    rejecting = asyncio.create_task(architect("DIA-0001", transition, "close"))
    result = await run_transition(transition.name, "DIA-0001", **kwargs)
    await rejecting
    return result


async def test_rejected_delivery_leaves_no_allocation_and_a_draft(inventory: EmbeddedInventory) -> None:
    before = await usage(inventory)
    await request_service(dia(1))
    result = await _run_rejected(DELIVER)
    assert result.outcome is Outcome.REJECTED
    assert result.status is ServiceStatus.DRAFT
    assert result.resources is None
    assert (await on_main(inventory, "DIA-0001")).implementation.empty
    assert await usage(inventory) == before
    assert await inventory.leaks() == []

    # Asking again starts a fresh attempt on a new branch and succeeds.
    retried = await run_transition("deliver", "DIA-0001", auto_approve=True)
    assert retried.outcome is Outcome.DONE and retried.branch == "dia-0001-deliver-2"


async def test_rejected_modify_keeps_the_old_resources(inventory: EmbeddedInventory) -> None:
    await deliver_directly(inventory, dia(1))
    old = (await on_main(inventory, "DIA-0001")).implementation
    taken = await usage(inventory)
    result = await _run_rejected(MODIFY, bandwidth=Bandwidth.G10, ip_package=IpPackage.LARGE)
    assert result.outcome is Outcome.REJECTED
    service = await on_main(inventory, "DIA-0001")
    assert service.status is ServiceStatus.ACTIVE
    assert (service.bandwidth, service.ip_package) == (Bandwidth.G1, IpPackage.SMALL)
    assert service.implementation == old
    assert await usage(inventory) == taken
    assert await inventory.leaks() == []


async def test_rejected_decommission_keeps_the_service_running(inventory: EmbeddedInventory) -> None:
    await deliver_directly(inventory, dia(1))
    old = (await on_main(inventory, "DIA-0001")).implementation
    taken = await usage(inventory)
    result = await _run_rejected(DECOMMISSION)
    assert result.outcome is Outcome.REJECTED
    service = await on_main(inventory, "DIA-0001")
    assert service.status is ServiceStatus.ACTIVE and service.implementation == old
    assert await usage(inventory) == taken


async def test_unreviewed_change_waits_then_reconciliation_concludes(inventory: EmbeddedInventory) -> None:
    await request_service(dia(1))
    await request_service(dia(2))
    one = await run_transition("deliver", "DIA-0001", wait=0.2)
    two = await run_transition("deliver", "DIA-0002", wait=0.2)
    assert one.outcome is Outcome.WAITING and one.status is ServiceStatus.IN_DELIVERY
    assert two.outcome is Outcome.WAITING

    report = await reconcile_now()
    assert sorted(report.waiting) == ["DIA-0001", "DIA-0002"] and report.leaks == []

    merged = await inventory.get_proposed_change("dia-0001-deliver")
    closed = await inventory.get_proposed_change("dia-0002-deliver")
    assert merged is not None and closed is not None
    await inventory.merge_proposed_change(merged.id)
    await inventory.close_proposed_change(closed.id)
    report = await reconcile_now()
    assert report.concluded == {"DIA-0002": "rejected"}  # the merge already made DIA-0001 active
    assert (await on_main(inventory, "DIA-0001")).status is ServiceStatus.ACTIVE
    assert (await on_main(inventory, "DIA-0002")).status is ServiceStatus.DRAFT
    assert (await on_main(inventory, "DIA-0002")).implementation.empty
    assert report.leaks == []
    assert (await inventory.get_proposed_change("dia-0002-deliver")).state is ChangeState.CLOSED
