"""The safety net: finish every transition whose proposed change was merged or closed, resume the
suspended flow runs waiting on them, and report leaked resources."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import aresume_flow_run

from allocation import lifecycle
from allocation.intent import ServiceStatus
from allocation.inventory import Inventory
from allocation.model import MAIN, ChangeState, Service
from flows import tasks
from flows.common import inventory_session
from flows.params import ReconcileParams, ReconcileReport
from flows.review import parse_pause_key


async def transition_underway(
    service: Service, inventory: Inventory
) -> tuple[lifecycle.Transition, str, ChangeState | None] | None:
    """The transition a service is in, its branch and the state of its proposed change."""
    if service.status is ServiceStatus.IN_DECOMMISSIONING:
        candidates = [lifecycle.DECOMMISSION]
    elif service.status is ServiceStatus.IN_DELIVERY:
        # A service that was ever modified is past delivery for good, so a modify branch wins.
        candidates = [lifecycle.MODIFY, lifecycle.DELIVER]
    else:
        return None
    for transition in candidates:
        branch, change = await lifecycle.review_branch(service.service_identifier, transition, inventory)
        if change is not None or transition is candidates[-1]:
            return transition, branch, change.state if change else None
    return None


async def resume_suspended(inventory: Inventory) -> list[str]:
    """Resume deployed runs suspended on a proposed change that is no longer open."""
    resumed: list[str] = []
    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=paused)
    for run in runs:
        keys = [k for key in run.empirical_policy.pause_keys or () if (k := parse_pause_key(key))]
        if not keys or run.state is None or not run.state.is_paused():
            continue
        branch = max(keys, key=lambda k: k[2])[0]
        change = await inventory.get_proposed_change(branch)
        if change is not None and change.state is not ChangeState.OPEN:
            await aresume_flow_run(run.id)
            resumed.append(run.name)
    return resumed


@flow(name="reconcile", flow_run_name="reconcile", persist_result=False)
async def reconcile(params: ReconcileParams | None = None) -> ReconcileReport:
    params = params or ReconcileParams()
    logger = get_run_logger()
    concluded: dict[str, str] = {}
    waiting: list[str] = []
    stalled: list[str] = []
    async with inventory_session() as inventory:
        for service in await inventory.list_services(MAIN):
            found = await transition_underway(service, inventory)
            if found is None:
                continue
            transition, branch, state = found
            identifier = service.service_identifier
            if state is ChangeState.OPEN:
                waiting.append(identifier)
                continue
            if state is None:
                stalled.append(identifier)
                continue
            outcome = await tasks.conclude(identifier, transition, inventory, branch)
            after = await inventory.get_service(identifier, MAIN)
            if after is not None and after.status is service.status:
                # Merged earlier, yet still in transition: a newer attempt stopped before its review.
                stalled.append(identifier)
            else:
                concluded[identifier] = outcome.value
        resumed = await resume_suspended(inventory) if params.resume_suspended else []
        leaks_of = getattr(inventory, "leaks", None)
        leaks: list[str] | None = list(await leaks_of()) if callable(leaks_of) else None
    if stalled:
        logger.warning("Stopped before review (re-run their flow): %s", ", ".join(stalled))
    if leaks:
        logger.error("Leaked resources (no owner on any branch): %s", "; ".join(leaks))
    return ReconcileReport(
        concluded=concluded, waiting=waiting, stalled=stalled, resumed_flow_runs=resumed, leaks=leaks
    )
