"""The named steps transitions are made of.

A step takes the run's ``Work`` and returns it with what the step produced. Every step is
idempotent: it reads what the branch already holds and does only what is missing, so it can run
twice, or again after a crash, and change nothing the second time. Steps chain with ``>>`` into the
declarations of ``allocation/transitions.py``; ``allocation/runner.py`` runs them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, TypeVar

from allocation import attempts, core, review
from allocation.errors import NotAsReviewed, ServiceConflict, UnknownService
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.inventory import Inventory
from allocation.model import MAIN, ChangeState, PlanningView, PortAssignment, ProposedChange, Service, Vlan
from allocation.results import Outcome

if TYPE_CHECKING:
    from allocation.transitions import Transition

_T = TypeVar("_T")


@dataclass(frozen=True)
class Changes:
    """What a modify asks for; empty for the other transitions."""

    bandwidth: Bandwidth | None = None
    ip_package: IpPackage | None = None

    def __bool__(self) -> bool:
        return self.bandwidth is not None or self.ip_package is not None


@dataclass(frozen=True)
class Work:
    """One run of a transition: what it acts on and what its steps produced so far."""

    identifier: str
    transition: Transition
    inventory: Inventory = field(repr=False, compare=False)
    changes: Changes = Changes()
    branch: str | None = None  # set by begin (or given when a suspended run resumes)
    plan: core.Plan | None = None
    # The planning view the plan was made from: the step after the plan writes from it (a rerun that
    # finds everything in place reads once), then drops it.
    view: PlanningView | None = field(default=None, repr=False, compare=False)
    vlan: Vlan | None = None
    prefix: IPv4Network | None = None
    port: PortAssignment | None = None
    change: ProposedChange | None = None
    outcome: Outcome | None = None  # set when the run is decided (begin: nothing to do; conclude)

    @property
    def on_branch(self) -> str:
        if self.branch is None:
            raise RuntimeError(f"{self.transition.name} {self.identifier} has not begun")
        return self.branch

    @property
    def planned(self) -> core.Plan:
        if self.plan is None:
            raise RuntimeError(f"{self.transition.name} {self.identifier} has no plan yet")
        return self.plan


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Work], Awaitable[Work]] = field(repr=False)

    async def __call__(self, work: Work) -> Work:
        return await self.run(work)

    def __rshift__(self, other: Step | Steps) -> Steps:
        return Steps((self,)) >> other


@dataclass(frozen=True)
class Steps:
    """An ordered list of steps, written ``plan >> allocate_resources >> ...``."""

    steps: tuple[Step, ...] = ()

    def __rshift__(self, other: Step | Steps) -> Steps:
        return Steps(self.steps + ((other,) if isinstance(other, Step) else other.steps))

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]


def step(name: str) -> Callable[[Callable[[Work], Awaitable[Work]]], Step]:
    def declare(run: Callable[[Work], Awaitable[Work]]) -> Step:
        return Step(name, run)

    return declare


# ---------------------------------------------------------------------- the frame's own steps
@step("begin")
async def begin(work: Work) -> Work:
    """Start (or resume) the transition: status ``during`` on main, then its branch. Main is written
    before the branch exists, so the branch never conflicts with main on the status. Sets the outcome
    instead when the service is already where it was asked to be."""
    t, inventory, identifier = work.transition, work.inventory, work.identifier
    # One read: the service on main, the proposed changes of all its branches and, for a transition
    # that allocates, what a plan needs; then one write (the status on main and the branch).
    view = await inventory.planning_view(identifier, MAIN, allocating=t.allocates)
    service = view.service
    if service is None:
        raise UnknownService(identifier)
    attempt = attempts.latest_of(view.changes, identifier, t.name)
    change = attempt.change
    branch = attempt.branch
    if service.status is t.during and change is not None and change.state is ChangeState.CLOSED:
        await give_back(replace(work, branch=branch))  # a rejection nobody compensated yet
        return await begin(work)
    resuming = service.status is t.during and (change is None or change.state is ChangeState.OPEN)
    if service.status is t.during and change is not None and change.state is ChangeState.MERGED:
        if t.target is not t.starts_from:
            raise ServiceConflict(
                f"{identifier} is {service.status.value} for another transition than {t.name}"
            )
        # A modify after an earlier, merged modify, interrupted before its proposed change opened.
        resuming, branch = True, attempt.following(identifier, t.name)
    if not resuming:
        if _already_there(service, t, work.changes):
            return replace(work, outcome=Outcome.DONE)
        if service.status is not t.starts_from:
            raise ServiceConflict(
                f"{identifier} is {service.status.value}: {t.name} needs it {t.starts_from.value}"
            )
        if change is not None:  # the previous attempt was concluded: a fresh branch
            branch = attempt.following(identifier, t.name)
        if t.allocates:  # check the request fits before touching anything
            core.plan_from(_desired(service, work.changes), view)
    under_review = change is not None and change.branch == branch and change.state is ChangeState.OPEN
    if resuming and under_review and not work.changes:
        return replace(work, branch=branch)  # there, under review, and nothing on it is to change
    await inventory.branch_off(
        identifier,
        branch,
        status=None if resuming else t.during,
        bandwidth=work.changes.bandwidth,
        ip_package=work.changes.ip_package,
    )
    return replace(work, branch=branch)


@step("mark target status")
async def mark_target(work: Work) -> Work:
    """The target status on the branch: it reaches main only with the merge."""
    await work.inventory.update_service(work.identifier, work.on_branch, status=work.transition.target)
    return work


@step("open proposed change")
async def open_change(work: Work) -> Work:
    view = await work.inventory.planning_view(work.identifier, work.on_branch, allocating=False)
    service = view.service
    if service is None:
        raise UnknownService(work.identifier)
    title = (
        f"{work.transition.name.capitalize()} {work.identifier} "
        f"({service.site}, {service.bandwidth.mbps} Mbit/s, {service.ip_package.value})"
    )
    known = [change for change in view.changes if change.branch == work.on_branch]
    change = await work.inventory.open_proposed_change(
        work.on_branch, title, describe(service, work.transition), known=known
    )
    return replace(work, change=change)


@step("conclude")
async def conclude(work: Work) -> Work:
    """Read the architect's decision: merged is done, closed is rejected, open is still waiting."""
    change = await work.inventory.get_proposed_change(work.on_branch)
    if change is None or change.state is ChangeState.OPEN:
        outcome = Outcome.WAITING
    else:
        outcome = Outcome.DONE if change.state is ChangeState.MERGED else Outcome.REJECTED
    return replace(work, change=change or work.change, outcome=outcome)


@step("verify merge")
async def verify_merge(work: Work) -> Work:
    """After a merge: what reached main is the plan the proposed change was opened for (or last
    re-opened for). Raises NotAsReviewed otherwise; a change that records no plan (opened by hand or
    by an older factory) has nothing to compare with, and a service that has moved on since (another
    transition under way) can no longer be compared."""
    change = work.change
    recorded = review.parse(change.description) if change is not None else None
    if change is None or change.state is not ChangeState.MERGED or recorded is None:
        return work
    service = await read_service(work.inventory, work.identifier, MAIN)
    if service.status is not work.transition.target:
        return work
    if not recorded.intact:
        raise NotAsReviewed(
            f"{work.identifier}: the plan recorded in proposed change {change.id} was edited after it was "
            "recorded: what reached main cannot be matched to what was reviewed"
        )
    differences = review.differences(recorded.states.get(work.identifier), service)
    if differences:
        raise NotAsReviewed(
            f"{work.identifier} reached main as it was not reviewed in proposed change {change.id} "
            f"(plan {review.short(recorded.digest)}): {'; '.join(differences)}"
        )
    return work


@step("give back")
async def give_back(work: Work) -> Work:
    """The compensation: what the branch took goes back, the status returns to where it started.
    Safe to repeat, and a no-op once the service has left the transition."""
    service = await read_service(work.inventory, work.identifier)
    if service.status is work.transition.during:
        await work.inventory.discard_changes(work.identifier, branch=work.on_branch)
        await work.inventory.update_service(work.identifier, MAIN, status=work.transition.starts_from)
    return work


# ---------------------------------------------------------------------- allocation steps
@step("plan")
async def plan(work: Work) -> Work:
    view = await work.inventory.planning_view(work.identifier, work.on_branch)
    return replace(work, plan=core.plan_in(view, work.identifier), view=view)


@step("allocate VLAN, prefix and port")
async def allocate_resources(work: Work) -> Work:
    """The VLAN ID and the prefix from the site's pools, the port claimed and set to the VLAN: what
    the service takes from the site and no other service may hold."""
    taken = await core.allocate_resources(work.planned, work.inventory, work.on_branch, view=work.view)
    return replace(work, vlan=taken.vlan, prefix=taken.prefix, port=taken.port, view=None)


@step("allocate gateway")
async def allocate_gateway(work: Work) -> Work:
    await core.allocate_gateway(
        work.planned,
        work.inventory,
        work.on_branch,
        _need(work.vlan, "VLAN", work),
        _need(work.prefix, "prefix", work),
        _need(work.port, "port", work),
    )
    return work


# ---------------------------------------------------------------------- release steps
@step("release gateway")
async def release_gateway(work: Work) -> Work:
    await work.inventory.release_gateway(work.identifier, branch=work.on_branch)
    return work


@step("release port")
async def release_port(work: Work) -> Work:
    await work.inventory.release_port(work.identifier, branch=work.on_branch)
    return work


@step("release prefix")
async def release_prefix(work: Work) -> Work:
    await work.inventory.release_prefix(work.identifier, branch=work.on_branch)
    return work


@step("release VLAN")
async def release_vlan(work: Work) -> Work:
    await work.inventory.release_vlan(work.identifier, branch=work.on_branch)
    return work


# ---------------------------------------------------------------------- helpers
async def read_service(inventory: Inventory, identifier: str, branch: str = MAIN) -> Service:
    service = await inventory.get_service(identifier, branch)
    if service is None:
        raise UnknownService(identifier)
    return service


def describe(service: Service, transition: Transition) -> str:
    """The proposed change's description: what the architect is asked to approve, ending with the plan
    it was opened for and its digest (``allocation/review.py``)."""
    impl = service.implementation
    port = impl.port.port if impl.port else None
    rows = [
        ("site", service.site),
        ("bandwidth", f"{service.bandwidth.mbps} Mbit/s"),
        ("IP package", service.ip_package.value),
        ("VLAN", f"{impl.vlan.vlan_id} ({impl.vlan.l2domain})" if impl.vlan else "-"),
        ("prefix", str(impl.prefix) if impl.prefix else "-"),
        ("port", f"{port.device} {port.name} ({port.speed_mbps} Mbit/s)" if port else "-"),
        (
            "gateway",
            f"{impl.gateway.address} on {impl.gateway.device} {impl.gateway.interface}"
            if impl.gateway
            else "-",
        ),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        f"{transition.name.capitalize()} of **{service.service_identifier}** (account "
        f"{service.account_reference}), status on merge: **{transition.target.value}**.\n\n"
        f"| | |\n|---|---|\n{table}\n\n"
        "The plan this change was opened for: it merges only while the branch matches it (a change "
        "made to the branch since is re-opened by running the transition again).\n\n"
        f"{review.record([service])}"
    )


def _need(value: _T | None, what: str, work: Work) -> _T:
    if value is None:
        raise RuntimeError(f"{work.transition.name} {work.identifier}: no {what} from an earlier step")
    return value


def _desired(service: Service, changes: Changes) -> ServiceRequest:
    return service.as_request().model_copy(
        update={
            "bandwidth": changes.bandwidth or service.bandwidth,
            "ip_package": changes.ip_package or service.ip_package,
        }
    )


def _already_there(service: Service, transition: Transition, changes: Changes) -> bool:
    if transition.target is transition.starts_from:  # a modify: there when nothing would change
        return (
            service.status is transition.target
            and (changes.bandwidth or service.bandwidth) == service.bandwidth
            and (changes.ip_package or service.ip_package) == service.ip_package
        )
    return service.status is transition.target
