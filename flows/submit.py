"""How a client (the CLI, the portal) runs a transition. Never boots a Prefect server of its own.

- No ``PREFECT_API_URL``: the plain runner, in this process, with no Prefect at all: nothing to
  start, nothing left behind when the process is killed.
- ``PREFECT_API_URL`` and the transition's deployment exists on that server: a flow run of the
  deployment, one per service and attempt however often it is asked for (an idempotency key), run
  by whichever worker serves it; the client waits until the run reaches its proposed change
  (suspended) or its end, so it shows in the UI like any other run.
- ``PREFECT_API_URL`` without deployments (``make demo``'s local server): the flow in this process,
  recorded on that server, so every run, task and wait shows in the UI.

Prefect is imported only on the two server paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Awaitable
from typing import Any

from allocation import architect, attempts
from allocation.errors import AllocationError
from allocation.inventory import Inventory
from allocation.model import ChangeState
from allocation.policy import TransitionName
from allocation.results import Outcome, TransitionResult
from allocation.runner import Poll, no_wait, result, run_transition
from allocation.steps import Changes, Work
from allocation.transitions import TRANSITIONS

PICKUP_TIMEOUT_SECONDS = 120.0  # a deployed run nobody picks up: no worker is serving the pool


def prefect_configured() -> bool:
    return bool(os.environ.get("PREFECT_API_URL"))


async def transition(
    name: TransitionName,
    identifier: str,
    inventory: Inventory,
    *,
    changes: Changes | None = None,
    wait_seconds: float = 0,
    auto_approve: bool = False,
) -> TransitionResult:
    """Run one transition up to its proposed change, or through it (``wait_seconds`` for the
    architect's decision; ``auto_approve`` merges as the architect as soon as the change is open)."""
    changes = changes or Changes()
    if auto_approve:
        wait_seconds = max(wait_seconds, 600)
    if not prefect_configured():
        approver = _architect(identifier, name, inventory) if auto_approve else None
        wait = Poll(wait_seconds) if wait_seconds else no_wait
        return await _beside(
            run_transition(TRANSITIONS[name], identifier, inventory, changes=changes, wait=wait), approver
        )
    deployment = await _deployment_id(name)
    if deployment is None:
        return await _in_process(name, identifier, inventory, changes, wait_seconds, auto_approve)
    return await _deployed(deployment, name, identifier, inventory, changes, wait_seconds, auto_approve)


async def _beside(main: Awaitable[TransitionResult], helper: Awaitable[Any] | None) -> TransitionResult:
    """Await ``main`` with ``helper`` running beside it (the architect), cancelled when main ends. A
    helper that fails (a merge its checks refuse) ends ``main`` with its error: the run would only
    wait for a decision that is not coming."""
    if helper is None:
        return await main
    run = asyncio.ensure_future(main)
    side = asyncio.ensure_future(helper)
    try:
        await asyncio.wait((run, side), return_when=asyncio.FIRST_COMPLETED)
        error = side.exception() if side.done() and not side.cancelled() else None
        if error is not None and not run.done():
            raise error
        return await run
    finally:
        for task in (side, run):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _architect(identifier: str, name: TransitionName, inventory: Inventory) -> Awaitable[Any]:
    return architect.when_open(identifier, TRANSITIONS[name], "merge", inventory)


# ---------------------------------------------------------------------- Prefect, in this process
async def _in_process(
    name: TransitionName,
    identifier: str,
    inventory: Inventory,
    changes: Changes,
    wait_seconds: float,
    auto_approve: bool,
) -> TransitionResult:
    from flows.decommission import decommission
    from flows.deliver import deliver
    from flows.modify import modify
    from flows.params import DecommissionParams, DeliverParams, LocalWait, ModifyParams

    local = LocalWait(seconds=wait_seconds)
    run: Awaitable[TransitionResult]
    if name == "deliver":
        run = deliver(DeliverParams(service_identifier=identifier), local)
    elif name == "modify":
        params = ModifyParams(
            service_identifier=identifier, bandwidth=changes.bandwidth, ip_package=changes.ip_package
        )
        run = modify(params, local)
    else:
        run = decommission(DecommissionParams(service_identifier=identifier), local)
    approver = _architect(identifier, name, inventory) if auto_approve else None
    return await _beside(run, approver)


# ---------------------------------------------------------------------- Prefect, through a deployment
async def _deployment_id(name: TransitionName) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            return (await client.read_deployment_by_name(f"{name}/{name}")).id
        except ObjectNotFound:
            return None


def idempotency_key(name: TransitionName, identifier: str, attempt: int, changes: Changes) -> str:
    """One flow run per service, transition and attempt (and asked-for values, for a modify)."""
    key = f"{name}:{identifier}:{attempt}"
    if changes:
        key += f":{changes.bandwidth or '-'}:{changes.ip_package or '-'}"
    return key


async def _next_attempt(name: TransitionName, identifier: str, inventory: Inventory) -> int:
    from allocation import policy

    latest = await attempts.latest(identifier, name, inventory)
    attempt = policy.attempt_of(latest.branch, identifier, name)
    decided = latest.change is not None and latest.change.state is not ChangeState.OPEN
    return attempt + 1 if decided else attempt


async def _deployed(
    deployment: Any,
    name: TransitionName,
    identifier: str,
    inventory: Inventory,
    changes: Changes,
    wait_seconds: float,
    auto_approve: bool,
) -> TransitionResult:
    from prefect.client.orchestration import get_client

    params: dict[str, Any] = {"service_identifier": identifier}
    if changes.bandwidth is not None:
        params["bandwidth"] = changes.bandwidth.value
    if changes.ip_package is not None:
        params["ip_package"] = changes.ip_package.value
    key = idempotency_key(name, identifier, await _next_attempt(name, identifier, inventory), changes)
    async with get_client() as client:
        flow_run = await client.create_flow_run_from_deployment(
            deployment, parameters={"params": params}, idempotency_key=key
        )
        state = await _settled(client, flow_run.id, PICKUP_TIMEOUT_SECONDS, stop_at_pause=True)
        if auto_approve and state is not None and state.is_paused():
            from flows.reconcile import resume_suspended

            decided = await architect.decide(identifier, "merge", inventory)
            if decided.branch is not None:  # resume it now rather than wait for an event or the sweep
                await resume_suspended(inventory, decided.branch)
            state = await _settled(client, flow_run.id, max(wait_seconds, 60), stop_at_pause=False)
        elif wait_seconds and state is not None and state.is_paused():
            state = await _settled(client, flow_run.id, wait_seconds, stop_at_pause=False)
    if state is None:
        raise AllocationError(
            f"flow run {flow_run.name} of deployment {name}/{name} was not picked up within "
            f"{PICKUP_TIMEOUT_SECONDS:.0f} s: is a worker serving its work pool?"
        )
    if state.is_failed() or state.is_crashed():
        raise AllocationError(_failure(state.message or f"flow run {flow_run.name} failed"))
    return await _result_from_inventory(name, identifier, inventory, paused=state.is_paused())


async def _settled(client: Any, flow_run_id: Any, seconds: float, *, stop_at_pause: bool) -> Any:
    """The run's state once it is paused (suspended for review) or final; None after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    delay = 0.1
    while True:
        state = (await client.read_flow_run(flow_run_id)).state
        if state is not None and (state.is_final() or (stop_at_pause and state.is_paused())):
            return state
        if loop.time() >= deadline:
            return state if state is not None and state.is_paused() else None
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 1.0)


_ENCOUNTERED = re.compile(r"^Flow run encountered an exception:\s*(?:[A-Za-z_.]+:\s*)?", re.S)


def _failure(message: str) -> str:
    """Prefect's "Flow run encountered an exception: NoPortAvailable: no free ..." as the reason only."""
    return _ENCOUNTERED.sub("", message).strip()


async def _result_from_inventory(
    name: TransitionName, identifier: str, inventory: Inventory, *, paused: bool
) -> TransitionResult:
    latest = await attempts.latest(identifier, name, inventory)
    state = latest.change.state if latest.change else None
    if paused or state is None or state is ChangeState.OPEN:
        outcome = Outcome.WAITING
    else:
        outcome = Outcome.DONE if state is ChangeState.MERGED else Outcome.REJECTED
    work = Work(
        identifier, TRANSITIONS[name], inventory, branch=latest.branch, change=latest.change, outcome=outcome
    )
    return await result(work)
