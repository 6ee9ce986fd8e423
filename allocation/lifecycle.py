"""The lifecycle of a service as named steps: begin a transition, work on its branch, ask for review,
conclude once the proposed change is merged or closed. Prefect flows run these steps as tasks;
the CLI runs them directly. Each step is idempotent.

    draft --deliver--> in-delivery --merged--> active --modify--> in-delivery --merged--> active
    active --decommission--> in-decommissioning --merged--> decommissioned
    (closed: back to where the transition started, with what the branch took given back)

Status is set on main when a transition starts and set to the target on the branch, so the
target reaches main only with the merge. Main is written before the branch is created, so the
branch never conflicts with main on the status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from allocation import core, policy
from allocation.errors import AllocationError, ServiceConflict, UnknownService
from allocation.intent import Bandwidth, IpPackage, ServiceRequest, ServiceStatus
from allocation.inventory import Inventory
from allocation.model import MAIN, ChangeState, Implementation, ProposedChange, Service


@dataclass(frozen=True)
class Transition:
    name: policy.Transition
    starts_from: ServiceStatus
    during: ServiceStatus
    target: ServiceStatus


DELIVER = Transition("deliver", ServiceStatus.DRAFT, ServiceStatus.IN_DELIVERY, ServiceStatus.ACTIVE)
MODIFY = Transition("modify", ServiceStatus.ACTIVE, ServiceStatus.IN_DELIVERY, ServiceStatus.ACTIVE)
DECOMMISSION = Transition(
    "decommission", ServiceStatus.ACTIVE, ServiceStatus.IN_DECOMMISSIONING, ServiceStatus.DECOMMISSIONED
)
TRANSITIONS = {t.name: t for t in (DELIVER, MODIFY, DECOMMISSION)}


class Outcome(StrEnum):
    WAITING = "waiting"  # the proposed change is still open
    DONE = "done"  # merged: the service reached the target state on main
    REJECTED = "rejected"  # closed: compensated, the service is back where it started


async def request_service(request: ServiceRequest, inventory: Inventory) -> Service:
    """Record a new draft service (what the form and the API call). A request that cannot be served
    now (unknown site, no port for the bandwidth, a pool exhausted) is refused before anything is
    recorded; a service that exists already is returned as it is. One read, and one write for a new
    service."""
    view = await inventory.planning_view(request.service_identifier, MAIN, site=request.site)
    existing = view.service
    if existing is None:
        core.plan_from(request, view)
        return await inventory.create_service(request)
    if (existing.account_reference, existing.site) != (request.account_reference, request.site):
        raise ServiceConflict(
            f"{request.service_identifier} already exists for account {existing.account_reference} "
            f"at {existing.site}"
        )
    return existing


async def get_service(identifier: str, inventory: Inventory, branch: str = MAIN) -> Service:
    service = await inventory.get_service(identifier, branch)
    if service is None:
        raise UnknownService(identifier)
    return service


async def review_branch(
    identifier: str, transition: Transition, inventory: Inventory
) -> tuple[str, ProposedChange | None]:
    """The branch of the transition's latest attempt and its proposed change, if any.

    Attempts are numbered: a closed (rejected) delivery leaves its branch for the record, and the
    next attempt works on ``<id>-deliver-2``."""
    latest: tuple[str, ProposedChange | None] = (_branch(identifier, transition, 1), None)
    attempt = 1
    while True:
        branch = _branch(identifier, transition, attempt)
        change = await inventory.get_proposed_change(branch)
        if change is None:
            return latest
        latest = (branch, change)
        attempt += 1


def latest_attempt(
    changes: Sequence[ProposedChange], identifier: str, transition: Transition
) -> tuple[str, ProposedChange | None]:
    """``review_branch`` from proposed changes already read (a planning view's, oldest first)."""
    newest = {change.branch: change for change in changes}
    latest: tuple[str, ProposedChange | None] = (_branch(identifier, transition, 1), None)
    attempt = 1
    while (change := newest.get(_branch(identifier, transition, attempt))) is not None:
        latest = (change.branch, change)
        attempt += 1
    return latest


async def begin(
    identifier: str,
    transition: Transition,
    inventory: Inventory,
    *,
    bandwidth: Bandwidth | None = None,
    ip_package: IpPackage | None = None,
) -> str | None:
    """Start (or resume) a transition and return the branch it works on; None if there is nothing to do.
    One read (the service on main, its proposed changes and, unless decommissioning, what a plan needs)
    and one write (status on main and the branch)."""
    allocating = transition is not DECOMMISSION
    view = await inventory.planning_view(identifier, MAIN, allocating=allocating)
    service = view.service
    if service is None:
        raise UnknownService(identifier)
    branch, change = latest_attempt(view.changes, identifier, transition)
    if service.status is transition.during and change is not None and change.state is ChangeState.CLOSED:
        await conclude(identifier, transition, inventory, branch)  # a rejection nobody compensated yet
        return await begin(identifier, transition, inventory, bandwidth=bandwidth, ip_package=ip_package)
    resuming = service.status is transition.during and (change is None or change.state is ChangeState.OPEN)
    if service.status is transition.during and change is not None and change.state is ChangeState.MERGED:
        if transition.target is not transition.starts_from:
            raise ServiceConflict(
                f"{identifier} is {service.status.value} for another transition than {transition.name}"
            )
        # A modify after an earlier, merged modify, interrupted before its review opened: resume it.
        resuming, branch = True, _next_attempt(branch, identifier, transition)
    if not resuming:
        if _already_there(service, transition, bandwidth, ip_package):
            return None
        if service.status is not transition.starts_from:
            raise ServiceConflict(
                f"{identifier} is {service.status.value}: {transition.name} needs it {transition.starts_from.value}"
            )
        if change is not None:  # the previous attempt was concluded: start a fresh branch
            branch = _next_attempt(branch, identifier, transition)
        if allocating:
            # Check the new request fits before touching anything.
            core.plan_from(core.desired(service, bandwidth, ip_package), view)
    under_review = change is not None and change.branch == branch and change.state is ChangeState.OPEN
    if resuming and under_review and bandwidth is None and ip_package is None:
        return branch  # the branch is there, under review, and nothing on it is to change
    await inventory.branch_off(
        identifier,
        branch,
        status=None if resuming else transition.during,
        bandwidth=bandwidth,
        ip_package=ip_package,
    )
    return branch


async def plan_on_branch(identifier: str, inventory: Inventory, branch: str) -> core.Plan:
    return await core.plan_service(identifier, inventory, branch)


async def mark_target(identifier: str, transition: Transition, inventory: Inventory, branch: str) -> None:
    await inventory.update_service(identifier, branch, status=transition.target)


async def request_review(
    identifier: str, transition: Transition, inventory: Inventory, branch: str
) -> ProposedChange:
    view = await inventory.planning_view(identifier, branch, allocating=False)
    service = view.service
    if service is None:
        raise UnknownService(identifier)
    title = f"{transition.name.capitalize()} {identifier} ({service.site}, {service.bandwidth.mbps} Mbit/s, {service.ip_package.value})"
    known = [change for change in view.changes if change.branch == branch]
    return await inventory.open_proposed_change(branch, title, describe(service, transition), known=known)


async def conclude(identifier: str, transition: Transition, inventory: Inventory, branch: str) -> Outcome:
    """Finish a transition according to its proposed change. Safe to call again and again."""
    change = await inventory.get_proposed_change(branch)
    if change is None or change.state is ChangeState.OPEN:
        return Outcome.WAITING
    if change.state is ChangeState.MERGED:
        return Outcome.DONE
    service = await get_service(identifier, inventory)
    if service.status is transition.during:
        await inventory.discard_changes(identifier, branch=branch)
        await inventory.update_service(identifier, MAIN, status=transition.starts_from)
    return Outcome.REJECTED


async def abandon(identifier: str, transition: Transition, inventory: Inventory, branch: str) -> None:
    """Undo a transition that failed before review (a lost race): nothing stays allocated."""
    await inventory.discard_changes(identifier, branch=branch)
    await inventory.update_service(identifier, MAIN, status=transition.starts_from)


async def prepare(
    identifier: str,
    transition: Transition,
    inventory: Inventory,
    *,
    bandwidth: Bandwidth | None = None,
    ip_package: IpPackage | None = None,
) -> ProposedChange | None:
    """Run a transition up to its review in one go (the CLI's path; flows run the same steps as tasks).
    Returns the open proposed change, or None when the service is already where it was asked to be."""
    branch = await begin(identifier, transition, inventory, bandwidth=bandwidth, ip_package=ip_package)
    if branch is None:
        return None
    try:
        if transition is DECOMMISSION:
            await core.release(identifier, inventory, branch)
        else:
            await core.apply(await plan_on_branch(identifier, inventory, branch), inventory, branch)
    except AllocationError:
        await abandon(identifier, transition, inventory, branch)
        raise
    await mark_target(identifier, transition, inventory, branch)
    return await request_review(identifier, transition, inventory, branch)


async def current_transition(
    identifier: str, inventory: Inventory
) -> tuple[Transition, str, ProposedChange] | None:
    """The transition under way on main with its branch and newest proposed change, if it has one yet."""
    service = await get_service(identifier, inventory)
    found: list[tuple[Transition, str, ProposedChange]] = []
    for transition in TRANSITIONS.values():
        if transition.during is service.status:
            branch, change = await review_branch(identifier, transition, inventory)
            if change is not None:
                found.append((transition, branch, change))
    open_first = sorted(
        found,
        key=lambda f: (
            f[2].state is ChangeState.OPEN,
            f[2].created_at.timestamp() if f[2].created_at else 0.0,
        ),
        reverse=True,
    )
    return open_first[0] if open_first else None


def describe(service: Service, transition: Transition) -> str:
    """The proposed change's description: what the architect is asked to approve."""
    impl: Implementation = service.implementation
    rows = [
        ("site", service.site),
        ("bandwidth", f"{service.bandwidth.mbps} Mbit/s"),
        ("IP package", service.ip_package.value),
        ("VLAN", f"{impl.vlan.vlan_id} ({impl.vlan.l2domain})" if impl.vlan else "-"),
        ("prefix", str(impl.prefix) if impl.prefix else "-"),
        (
            "port",
            f"{impl.port.port.device} {impl.port.port.name} ({impl.port.port.speed_mbps} Mbit/s)"
            if impl.port
            else "-",
        ),
        (
            "gateway",
            f"{impl.gateway.address} on {impl.gateway.device} {impl.gateway.interface}"
            if impl.gateway
            else "-",
        ),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        f"{transition.name.capitalize()} of **{service.service_identifier}** (account {service.account_reference}), "
        f"status on merge: **{transition.target.value}**.\n\n| | |\n|---|---|\n{table}\n"
    )


def _branch(identifier: str, transition: Transition, attempt: int) -> str:
    base = policy.branch_name(identifier, transition.name)
    return base if attempt == 1 else f"{base}-{attempt}"


def _next_attempt(branch: str, identifier: str, transition: Transition) -> str:
    base = policy.branch_name(identifier, transition.name)
    attempt = 1 if branch == base else int(branch.rsplit("-", 1)[1])
    return _branch(identifier, transition, attempt + 1)


def _already_there(
    service: Service, transition: Transition, bandwidth: Bandwidth | None, ip_package: IpPackage | None
) -> bool:
    if transition is MODIFY:
        return (
            service.status is ServiceStatus.ACTIVE
            and (bandwidth or service.bandwidth) == service.bandwidth
            and (ip_package or service.ip_package) == service.ip_package
        )
    return service.status is transition.target


__all__ = [
    "DECOMMISSION",
    "DELIVER",
    "MODIFY",
    "TRANSITIONS",
    "AllocationError",
    "Outcome",
    "Transition",
    "abandon",
    "begin",
    "conclude",
    "current_transition",
    "describe",
    "latest_attempt",
    "mark_target",
    "plan_on_branch",
    "prepare",
    "request_review",
    "request_service",
    "review_branch",
]
