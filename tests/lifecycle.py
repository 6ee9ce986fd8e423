"""The lifecycle as tests drive it step by step: thin calls onto the declarations and the plain runner.

Tests that set up or inspect a service half-way through a transition (stop after begin, conclude by
hand) use these; tests of whole transitions use ``allocation.runner`` or the flows directly.
"""

from __future__ import annotations

from allocation import core, intake
from allocation.attempts import latest
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.inventory import Inventory
from allocation.model import MAIN, ProposedChange, Service
from allocation.results import Outcome
from allocation.runner import run, settle
from allocation.steps import Changes, Work, read_service
from allocation.steps import begin as begin_step
from allocation.steps import plan as plan_step
from allocation.transitions import DECOMMISSION, DELIVER, MODIFY, TRANSITIONS, Transition

__all__ = [
    "DECOMMISSION",
    "DELIVER",
    "MODIFY",
    "TRANSITIONS",
    "Outcome",
    "Transition",
    "begin",
    "conclude",
    "get_service",
    "plan_on_branch",
    "prepare",
    "request_service",
    "review_branch",
]


async def request_service(request: ServiceRequest, inventory: Inventory) -> Service:
    service, _ = await intake.record(request, inventory)
    return service


async def get_service(identifier: str, inventory: Inventory, branch: str = MAIN) -> Service:
    return await read_service(inventory, identifier, branch)


async def prepare(
    identifier: str,
    transition: Transition,
    inventory: Inventory,
    *,
    bandwidth: Bandwidth | None = None,
    ip_package: IpPackage | None = None,
) -> ProposedChange | None:
    """Run a transition up to its open proposed change; None when there is nothing to do."""
    work = await run(Work(identifier, transition, inventory, Changes(bandwidth, ip_package)))
    return work.change


async def begin(
    identifier: str,
    transition: Transition,
    inventory: Inventory,
    *,
    bandwidth: Bandwidth | None = None,
    ip_package: IpPackage | None = None,
) -> str | None:
    """Only the first step: the branch it works on (a run that stops right after begin)."""
    work = await begin_step(Work(identifier, transition, inventory, Changes(bandwidth, ip_package)))
    return work.branch


async def plan_on_branch(identifier: str, inventory: Inventory, branch: str) -> core.Plan:
    work = await plan_step(Work(identifier, DELIVER, inventory, branch=branch))
    return work.planned


async def conclude(identifier: str, transition: Transition, inventory: Inventory, branch: str) -> Outcome:
    work = await settle(Work(identifier, transition, inventory, branch=branch))
    assert work.outcome is not None
    return work.outcome


async def review_branch(
    identifier: str, transition: Transition, inventory: Inventory
) -> tuple[str, ProposedChange | None]:
    attempt = await latest(identifier, transition.name, inventory)
    return attempt.branch, attempt.change
