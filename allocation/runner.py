"""The one frame every transition runs in, and the plain way of running it (no Prefect).

``run`` owns the order around a declaration's steps: begin, the steps, the target status, the
proposed change, the wait, the conclusion, the verification that a merge brought to main what was
reviewed, and the compensation when a step is refused or the change is closed. How a step is executed and how the wait happens are given to it: the plain runner calls
the step and polls (or does not wait at all); ``flows/`` executes each step as a Prefect task and
suspends a deployed run while the change is under review.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from allocation.errors import AllocationError, InventoryUnavailable
from allocation.inventory import Inventory
from allocation.model import MAIN, ChangeState
from allocation.results import Handover, Outcome, TransitionResult
from allocation.steps import (
    Changes,
    Step,
    Work,
    begin,
    conclude,
    mark_target,
    open_change,
    read_service,
    verify_merge,
)
from allocation.transitions import Transition, underway

Execute = Callable[[Step, Work], Awaitable[Work]]
Wait = Callable[[Work], Awaitable[None]]


async def call(step: Step, work: Work) -> Work:
    """The plain executor: the step itself, nothing around it."""
    return await step(work)


async def no_wait(work: Work) -> None:
    """Open the proposed change and return: reconciliation (or the architect's CLI) concludes."""


@dataclass(frozen=True)
class Poll:
    """Wait for the architect's decision by reading the change, with backoff, up to a timeout."""

    timeout_seconds: float
    first_seconds: float = 0.05
    ceiling_seconds: float = 2.0

    async def __call__(self, work: Work) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_seconds
        delay = self.first_seconds
        while loop.time() < deadline:
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            try:
                change = await work.inventory.get_proposed_change(work.on_branch)
            except InventoryUnavailable:
                continue  # a read lost while waiting; the review goes on, and so does the wait
            if change is not None and change.state is not ChangeState.OPEN:
                return
            delay = min(delay * 2, self.ceiling_seconds)


async def run(work: Work, *, execute: Execute = call, wait: Wait = no_wait) -> Work:
    """Run a transition to its decision. A work that already has a branch is a resumed run: it goes
    straight to waiting and concluding (what a suspended Prefect run does when it is resumed)."""
    if work.branch is None:
        work = await execute(begin, work)
        if work.outcome is not None:
            return work  # already where it was asked to be
        try:
            for step in work.transition.steps:
                work = await execute(step, work)
        except AllocationError:
            await execute(work.transition.compensation, work)  # a race lost half-way: nothing kept
            raise
        work = await execute(mark_target, work)
        work = await execute(open_change, work)
    await wait(work)
    return await settle(work, execute)


async def settle(work: Work, execute: Execute = call) -> Work:
    """Conclude according to the proposed change: a merged one is verified against the plan it was
    reviewed with, a closed one is compensated. Safe to repeat."""
    work = await execute(conclude, work)
    if work.outcome is Outcome.DONE:
        work = await execute(verify_merge, work)
    elif work.outcome is Outcome.REJECTED:
        work = await execute(work.transition.compensation, work)
    return work


async def result(work: Work) -> TransitionResult:
    """The run's result for the person who asked: status on main, the change, the handover."""
    service = await read_service(work.inventory, work.identifier, MAIN)
    outcome = work.outcome or Outcome.WAITING
    if work.branch is None:
        message = f"{work.identifier} is already {service.status.value}: nothing to {work.transition.name}"
    else:
        message = _MESSAGES[outcome].format(
            id=work.identifier, status=service.status.value, branch=work.branch
        )
    return TransitionResult(
        service_identifier=work.identifier,
        transition=work.transition.name,
        outcome=outcome,
        status=service.status,
        branch=work.branch,
        proposed_change=work.change.id if work.change else None,
        message=message,
        resources=Handover.of(service) if outcome is not Outcome.REJECTED else None,
    )


async def run_transition(
    transition: Transition,
    identifier: str,
    inventory: Inventory,
    *,
    changes: Changes | None = None,
    wait: Wait = no_wait,
) -> TransitionResult:
    """Run a transition with plain calls: what the CLI, the bench and the tests use without Prefect."""
    work = Work(identifier, transition, inventory, changes or Changes())
    return await result(await run(work, wait=wait))


async def reopen(identifier: str, inventory: Inventory) -> TransitionResult:
    """Re-open the proposed change a service waits on with a fresh plan: the transition it is in runs
    again on its branch (each step brings back what a hand edit or a second attempt changed, where
    the product's rules say how), and the change records the plan the branch now holds; its checks
    run again. A change that records a plan refuses to merge while the branch differs from it."""
    service = await read_service(inventory, identifier, MAIN)
    found = await underway(service, inventory)
    if found is None or found.change is None or found.change.state is not ChangeState.OPEN:
        raise AllocationError(f"{identifier} has no proposed change waiting for review")
    return await run_transition(found.transition, identifier, inventory)


_MESSAGES = {
    Outcome.DONE: "{id} is {status}",
    Outcome.REJECTED: "the proposed change was closed: {id} is back to {status}, nothing it took on {branch} is kept",
    Outcome.WAITING: "the proposed change is open for review: {id} stays {status} until it is merged or closed",
}
