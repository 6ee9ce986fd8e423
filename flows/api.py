"""The thin API the CLI calls: run a transition in-process (Prefect's ephemeral mode when no server
is configured), optionally with an architect that merges (or closes) the proposed change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

from allocation import lifecycle
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.model import ChangeState, ProposedChange
from allocation.settings import open_inventory
from flows.decommission import decommission
from flows.deliver import deliver
from flows.modify import modify
from flows.params import (
    DecommissionParams,
    DeliverParams,
    ModifyParams,
    ReconcileParams,
    ReconcileReport,
    Review,
    TransitionResult,
)
from flows.reconcile import reconcile
from flows.request import request

TransitionName = Literal["deliver", "modify", "decommission"]
Decision = Literal["merge", "close"]


async def request_service(service: ServiceRequest) -> TransitionResult:
    return await request(service)


async def run_transition(
    transition: TransitionName,
    service_identifier: str,
    *,
    bandwidth: Bandwidth | None = None,
    ip_package: IpPackage | None = None,
    auto_approve: bool = False,
    review: Review | None = None,
) -> TransitionResult:
    """Run one lifecycle flow to its end. With ``auto_approve`` an architect merges the proposed
    change as soon as it is open; without it, the flow polls until ``review.timeout_seconds`` and
    ends ``waiting`` (reconciliation finishes the transition once someone merges or closes it)."""
    policy = review or Review()
    if transition == "deliver":
        run = deliver(DeliverParams(service_identifier=service_identifier, review=policy))
    elif transition == "modify":
        run = modify(
            ModifyParams(
                service_identifier=service_identifier,
                bandwidth=bandwidth,
                ip_package=ip_package,
                review=policy,
            )
        )
    else:
        run = decommission(DecommissionParams(service_identifier=service_identifier, review=policy))
    if not auto_approve:
        return await run
    identifier = service_identifier.strip().upper()
    approver = asyncio.create_task(architect(identifier, lifecycle.TRANSITIONS[transition], "merge"))
    try:
        return await run
    finally:
        approver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await approver


async def architect(
    service_identifier: str,
    transition: lifecycle.Transition,
    decision: Decision = "merge",
    *,
    poll_seconds: float = 0.02,
    max_poll_seconds: float = 2.0,
    timeout_seconds: float | None = None,
) -> ProposedChange:
    """Wait for the transition's proposed change to be open, then merge (or close) it. Separate from
    the flow on purpose: in production a person does this in Infrahub."""
    inventory = open_inventory()
    try:
        async with asyncio.timeout(timeout_seconds):
            while True:
                _, change = await lifecycle.review_branch(service_identifier, transition, inventory)
                if change is not None and change.state is ChangeState.OPEN:
                    if decision == "merge":
                        return await inventory.merge_proposed_change(change.id)
                    return await inventory.close_proposed_change(change.id)
                await asyncio.sleep(poll_seconds)
                # Fast on the embedded file, gentle on a remote Infrahub while a pipeline runs.
                poll_seconds = min(poll_seconds * 2, max_poll_seconds)
    finally:
        await inventory.close()


async def reconcile_now(resume_suspended: bool = True) -> ReconcileReport:
    return await reconcile(ReconcileParams(resume_suspended=resume_suspended))


def quiet_console(level: int = logging.WARNING) -> None:
    """Keep Prefect's console output to warnings (flow and task logs still reach the Prefect API)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict))]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(level)
