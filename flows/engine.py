"""The transition declarations (``allocation/transitions.py``) run by Prefect.

The frame is the core's own (``allocation.runner.run``); this module only says how Prefect executes
it: every step is a task (named for the step, retried on transient errors only), and the wait for
the architect's decision suspends a deployed run (no process held while a review takes days; an
Infrahub event or reconciliation resumes it) or polls in a run without a deployment.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

import httpx
from prefect import Task, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType, TaskRun
from prefect.context import FlowRunContext
from prefect.flow_runs import asuspend_flow_run
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from allocation.errors import InventoryUnavailable
from allocation.inventory import Inventory
from allocation.model import ChangeState
from allocation.results import Outcome, TransitionResult
from allocation.runner import Poll, Wait, result, run
from allocation.settings import open_inventory
from allocation.steps import Changes, Step, Work, read_service
from allocation.transitions import Transition
from flows.params import LocalWait

RETRIES = 4
RETRY_DELAYS = [0.5, 1, 2, 4]  # seconds: a locked SQLite file or a restarting Infrahub
SUSPEND_TIMEOUT_SECONDS = 14 * 24 * 3600  # how long a review may take before the run times out
PAUSE_KEY_PREFIX = "review:"


# ---------------------------------------------------------------------- steps as tasks
def is_transient(error: BaseException) -> bool:
    if isinstance(error, InventoryUnavailable | httpx.TransportError | ConnectionError | TimeoutError):
        return True
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code in (429, 502, 503, 504)
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        return "locked" in text or "busy" in text
    return False


def _retry_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's retry_condition_fn: a domain error or a programming error fails at once."""
    error = state.data  # Prefect hands the raised exception over as the Failed state's data
    return isinstance(error, BaseException) and is_transient(error)


async def _run_step(step: Step, work: Work) -> Work:
    return await step(work)


@cache
def as_task(step: Step) -> Task[[Step, Work], Coroutine[Any, Any, Work]]:
    """One Prefect task per declared step. The work carries a live inventory connection, not data:
    no caching, no persisted result, and Prefect does not look inside it (``quote``)."""
    return task(
        name=step.name,
        retries=RETRIES,
        retry_delay_seconds=RETRY_DELAYS,
        retry_condition_fn=_retry_transient,
        cache_policy=NO_CACHE,
        persist_result=False,
    )(_run_step)


async def execute(step: Step, work: Work) -> Work:
    """The Prefect executor of the frame: the step as a task run named for it and the service."""
    named = as_task(step).with_options(task_run_name=f"{step.name} {work.identifier}")
    unexamined: Any = quote  # Prefect passes the values through without looking inside them
    return await named(unexamined(step), unexamined(work))


# ---------------------------------------------------------------------- waiting for the decision
def pause_key(branch: str, suspensions: int) -> str:
    return f"{PAUSE_KEY_PREFIX}{branch}:{suspensions}"


def parse_pause_key(key: str) -> tuple[str, int] | None:
    if not key.startswith(PAUSE_KEY_PREFIX):
        return None
    branch, _, count = key.removeprefix(PAUSE_KEY_PREFIX).rpartition(":")
    return (branch, int(count)) if branch and count.isdigit() else None


def _deployed() -> bool:
    context = FlowRunContext.get()
    return context is not None and context.flow_run is not None and context.flow_run.deployment_id is not None


async def _suspensions() -> list[tuple[str, int]]:
    """The branches this (deployed) run was suspended on so far, with their counts."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or not _deployed():
        return []
    async with get_client() as client:
        run_ = await client.read_flow_run(context.flow_run.id)
    return [parsed for key in run_.empirical_policy.pause_keys or () if (parsed := parse_pause_key(key))]


async def resumed_branch() -> str | None:
    """The branch a resumed run was suspended on: it goes straight to concluding."""
    found = await _suspensions()
    return max(found, key=lambda k: k[1])[0] if found else None


def decision_wait(local: LocalWait) -> Wait:
    """Suspend a deployed run while the change is open; poll for ``local.seconds`` otherwise."""

    async def wait(work: Work) -> None:
        if not _deployed():
            await Poll(local.seconds)(work)
            return
        change = await work.inventory.get_proposed_change(work.on_branch)
        if change is not None and change.state is not ChangeState.OPEN:
            return
        count = 1 + max((n for b, n in await _suspensions() if b == work.on_branch), default=0)
        _suspension_is_not_an_error()
        get_run_logger().info(
            "Proposed change %s of %s is open for review: this run is suspended (no process held) "
            "until it is merged or closed",
            change.id if change else "-",
            work.on_branch,
        )
        await asuspend_flow_run(key=pause_key(work.on_branch, count), timeout=SUSPEND_TIMEOUT_SECONDS)

    return wait


class _SuspendedIsInfo(logging.Filter):
    """Prefect's engine logs every final state but Completed as an error, a suspension included;
    waiting for a review is the normal course of a deployed run, so its line is an INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith("Finished in state Suspended"):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _suspension_is_not_an_error() -> None:
    logger = logging.getLogger("prefect.flow_runs")
    if not any(isinstance(f, _SuspendedIsInfo) for f in logger.filters):
        logger.addFilter(_SuspendedIsInfo())


# ---------------------------------------------------------------------- the flow bodies
@asynccontextmanager
async def inventory_session() -> AsyncIterator[Inventory]:
    """One inventory per flow run, chosen by configuration (FACTORY_BACKEND, FACTORY_DB, INFRAHUB_*)."""
    inventory = open_inventory()
    try:
        yield inventory
    finally:
        await inventory.close()


def run_name(verb: str) -> Callable[[], str]:
    """Flow run names such as "deliver DIA-0042": reconciliation finds a service's runs by them."""

    def name() -> str:
        params: dict[str, Any] = flow_run.get_parameters()
        value = params.get("params")
        identifier = getattr(value, "service_identifier", None)
        if identifier is None and isinstance(value, dict):
            identifier = value.get("service_identifier")
        return f"{verb} {str(identifier).strip().upper()}" if identifier else verb

    return name


async def run_transition(
    transition: Transition, identifier: str, changes: Changes, local: LocalWait | None
) -> TransitionResult:
    """The body of every lifecycle flow: the declaration in the core's frame, steps as tasks."""
    branch = await resumed_branch()
    if branch is None and (earlier := await _earlier_run(transition, identifier)) is not None:
        return await _handled_by(earlier, transition, identifier)
    async with inventory_session() as inventory:
        work = Work(identifier, transition, inventory, changes, branch=branch)
        work = await run(work, execute=execute, wait=decision_wait(local or LocalWait()))
        outcome = await result(work)
    await publish(outcome)
    return outcome


async def _earlier_run(transition: Transition, identifier: str) -> FlowRun | None:
    """A deployed run of the same transition for the same service, started earlier and not finished
    (running, or suspended while its change is reviewed). A retried API call or a repeated event
    then ends at once instead of doing the transition a second time beside it."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or not _deployed():
        return None
    me = context.flow_run
    active = FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PAUSED])
    same = FlowRunFilter(
        name=FlowRunFilterName(any_=[f"{transition.name} {identifier}"]),
        state=FlowRunFilterState(type=active),
        deployment_id=FlowRunFilterDeploymentId(any_=[me.deployment_id]) if me.deployment_id else None,
    )
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=same)
    earlier = [
        r for r in runs if r.id != me.id and (r.created or me.created, str(r.id)) < (me.created, str(me.id))
    ]
    return min(earlier, key=lambda r: (r.created, str(r.id))) if earlier else None


async def _handled_by(earlier: FlowRun, transition: Transition, identifier: str) -> TransitionResult:
    get_run_logger().info(
        "%s of %s is already under way in flow run %s: nothing done here",
        transition.name,
        identifier,
        earlier.name,
    )
    async with inventory_session() as inventory:
        service = await read_service(inventory, identifier)
    return TransitionResult(
        service_identifier=identifier,
        transition=transition.name,
        outcome=Outcome.WAITING,
        status=service.status,
        message=f"{transition.name} of {identifier} is already under way in flow run {earlier.name} ({earlier.id})",
    )


async def publish(outcome: TransitionResult) -> None:
    """The run's result on its page in the UI: the handover once active, else where it stands."""
    rows = [
        ("service", outcome.service_identifier),
        ("outcome", outcome.outcome.value),
        ("status on main", outcome.status.value),
        ("branch", outcome.branch or "-"),
        ("proposed change", outcome.proposed_change or "-"),
    ]
    if outcome.resources is not None:
        handover = outcome.resources
        rows += [
            ("site", handover.site),
            ("bandwidth", f"{handover.bandwidth_mbps} Mbit/s"),
            ("port", handover.port),
            ("VLAN", str(handover.vlan_id)),
            ("prefix", handover.prefix),
            ("gateway", str(handover.gateway)),
            (
                "customer addresses",
                f"{handover.first_customer_address} - {handover.last_customer_address} "
                f"({handover.customer_addresses})",
            ),
        ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    await acreate_markdown_artifact(
        key=f"{outcome.service_identifier.lower()}-{outcome.transition}",
        markdown=f"### {outcome.transition} {outcome.service_identifier}\n\n{outcome.message}\n\n"
        f"| | |\n|---|---|\n{table}\n",
        description=f"{outcome.transition} {outcome.service_identifier}: {outcome.outcome.value}",
    )
