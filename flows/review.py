"""Review: open the proposed change, wait for the architect, conclude.

Waiting follows DESIGN.md. A run of a served deployment checks the change once and, if it is still
open, *suspends* (``suspend_flow_run`` with a key naming the branch and the change): no process is
held while the review takes days. The reconciliation flow resumes it once the change is merged or
closed (or an event triggers reconciliation). A resumed run starts from the top; it finds the branch
in its own pause keys and goes straight to concluding, so a closed change is reported as rejected
instead of starting a new attempt. A local run (no deployment: CLI, tests) polls with exponential
backoff up to a timeout and, if the change is still open then, ends with outcome ``waiting``: the
service stays in its transition and reconciliation concludes it later.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.flow_runs import asuspend_flow_run

from allocation import lifecycle
from allocation.inventory import Inventory
from allocation.model import ChangeState
from flows import tasks
from flows.params import Outcome, Review

PAUSE_KEY_PREFIX = "review:"


@dataclass(frozen=True)
class ReviewResult:
    outcome: Outcome
    change_id: str | None


def pause_key(branch: str, change_id: str, attempt: int) -> str:
    return f"{PAUSE_KEY_PREFIX}{branch}:{change_id}:{attempt}"


def parse_pause_key(key: str) -> tuple[str, str, int] | None:
    if not key.startswith(PAUSE_KEY_PREFIX):
        return None
    branch, change_id, attempt = key.removeprefix(PAUSE_KEY_PREFIX).rsplit(":", 2)
    return branch, change_id, int(attempt)


def deployment_run() -> bool:
    context = FlowRunContext.get()
    return context is not None and context.flow_run is not None and context.flow_run.deployment_id is not None


async def resumed_review() -> tuple[str, int] | None:
    """(branch, suspensions so far) if this deployed run was suspended waiting for a review."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow_run.deployment_id is None:
        return None
    async with get_client() as client:
        run = await client.read_flow_run(context.flow_run.id)
    keys = [parsed for key in run.empirical_policy.pause_keys or () if (parsed := parse_pause_key(key))]
    if not keys:
        return None
    branch, _, attempt = max(keys, key=lambda k: k[2])
    return branch, attempt


async def review(
    identifier: str,
    transition: lifecycle.Transition,
    inventory: Inventory,
    branch: str,
    policy: Review,
    *,
    suspensions: int = 0,
) -> ReviewResult:
    """Open (or find) the branch's proposed change and wait for its outcome."""
    change = await tasks.open_proposed_change(identifier, transition, inventory, branch)
    return await wait(identifier, transition, inventory, branch, change.id, policy, suspensions=suspensions)


async def wait(
    identifier: str,
    transition: lifecycle.Transition,
    inventory: Inventory,
    branch: str,
    change_id: str | None,
    policy: Review,
    *,
    suspensions: int = 0,
) -> ReviewResult:
    outcome = await tasks.conclude(identifier, transition, inventory, branch)
    if outcome is not lifecycle.Outcome.WAITING:
        return ReviewResult(Outcome(outcome.value), change_id)
    logger = get_run_logger()
    if deployment_run():
        logger.info(
            "Proposed change %s of %s is open: suspending until it is merged or closed", change_id, branch
        )
        await asuspend_flow_run(
            key=pause_key(branch, change_id or "-", suspensions + 1),
            timeout=policy.suspend_timeout_seconds,
        )
        # Only reached if this key already fired (a resumed run re-entering): check again.
        outcome = await tasks.conclude(identifier, transition, inventory, branch)
        return ReviewResult(Outcome(outcome.value), change_id)
    logger.info("Waiting for proposed change %s of %s to be merged or closed", change_id, branch)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.timeout_seconds
    delay = policy.poll_seconds
    while loop.time() < deadline:
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        change = await inventory.get_proposed_change(branch)  # a plain read: no task run per poll
        if change is not None and change.state is not ChangeState.OPEN:
            outcome = await tasks.conclude(identifier, transition, inventory, branch)
            return ReviewResult(Outcome(outcome.value), change_id)
        delay = min(delay * 2, policy.max_poll_seconds)
    logger.warning(
        "Proposed change %s of %s still open after %.0f s: reconciliation will finish %s",
        change_id,
        branch,
        policy.timeout_seconds,
        identifier,
    )
    return ReviewResult(Outcome.WAITING, change_id)
