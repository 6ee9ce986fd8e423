"""The safety net, and what an Infrahub event triggers: finish every transition whose proposed change
was merged or closed, resume the suspended runs waiting on it, report leaked resources.

Scheduled, it looks at every service; triggered by an event that names a review branch, it looks at
that branch's service only, so one architect's merge resumes exactly the runs waiting on it.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.flow_runs import aresume_flow_run
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from allocation import policy
from allocation.errors import NotAsReviewed
from allocation.inventory import Inventory
from allocation.model import MAIN, ChangeState, Service
from allocation.runner import settle
from allocation.steps import Work
from allocation.transitions import TRANSITIONS, underway
from flows.engine import execute, inventory_session, parse_pause_key
from flows.params import ReconcileParams


class ReconcileReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    concluded: dict[str, str] = Field(default_factory=dict, description="service -> outcome")
    waiting: list[str] = Field(default_factory=list, description="services whose change is still open")
    stalled: list[str] = Field(
        default_factory=list, description="services in a transition with no proposed change yet"
    )
    resumed_flow_runs: list[str] = Field(default_factory=list)
    leaks: list[str] = Field(default_factory=list)
    unreviewed: dict[str, str] = Field(
        default_factory=dict, description="services whose merge brought to main what was not reviewed"
    )


def _run_name() -> str:
    params = flow_run.get_parameters().get("params")
    branch = params.get("branch") if isinstance(params, dict) else getattr(params, "branch", None)
    return f"reconcile {branch}" if branch else "reconcile"


@flow(name="reconcile", flow_run_name=_run_name, persist_result=False)
async def reconcile(params: ReconcileParams | None = None) -> ReconcileReport:
    params = params or ReconcileParams()
    concluded: dict[str, str] = {}
    waiting: list[str] = []
    stalled: list[str] = []
    unreviewed: dict[str, str] = {}
    async with inventory_session() as inventory:
        for service in await _services(params.branch, inventory):
            found = await underway(service, inventory)
            if found is None:
                continue
            identifier = service.service_identifier
            if found.change is None:
                stalled.append(identifier)
            elif found.change.state is ChangeState.OPEN:
                waiting.append(identifier)
            else:
                try:
                    work = await settle(
                        Work(identifier, found.transition, inventory, branch=found.branch), execute
                    )
                except NotAsReviewed as error:
                    unreviewed[identifier] = str(error)
                    continue
                after = await inventory.get_service(identifier, MAIN)
                if after is not None and after.status is service.status:
                    # Merged earlier, yet still in transition: a newer attempt stopped before its review.
                    stalled.append(identifier)
                else:
                    concluded[identifier] = str(work.outcome)
        resumed = await resume_suspended(inventory, params.branch) if params.resume_suspended else []
        leaks = await inventory.leaks() if params.branch is None else []
    report = ReconcileReport(
        concluded=concluded,
        waiting=waiting,
        stalled=stalled,
        resumed_flow_runs=resumed,
        leaks=leaks,
        unreviewed=unreviewed,
    )
    logger = get_run_logger()
    if stalled:
        logger.warning("Stopped before review (run their transition again): %s", ", ".join(stalled))
    if leaks:
        logger.error("Leaked resources (no owner on any branch): %s", "; ".join(leaks))
    for message in unreviewed.values():
        logger.error("Not as reviewed: %s", message)
    await acreate_markdown_artifact(
        key="reconcile-report", markdown=_markdown(report), description="What reconciliation found"
    )
    return report


async def _services(branch: str | None, inventory: Inventory) -> list[Service]:
    if branch is None:
        return await inventory.list_services(MAIN)
    parsed = policy.parse_branch(branch)
    if parsed is None:
        return []
    service = await inventory.get_service(parsed[0], MAIN)
    return [service] if service is not None else []


async def resume_suspended(inventory: Inventory, branch: str | None = None) -> list[str]:
    """Resume the deployed runs suspended on a proposed change that is no longer open."""
    state = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    names = None
    if branch is not None:
        parsed = policy.parse_branch(branch)
        if parsed is None:
            return []
        names = FlowRunFilterName(any_=[f"{t} {parsed[0]}" for t in TRANSITIONS])
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(state=state, name=names))
    resumed: list[str] = []
    for run in runs:
        waiting_on = _waiting_on(run)
        if waiting_on is None or (branch is not None and waiting_on != branch):
            continue
        change = await inventory.get_proposed_change(waiting_on)
        if change is not None and change.state is not ChangeState.OPEN:
            await aresume_flow_run(run.id)
            resumed.append(run.name)
    return resumed


def _waiting_on(run: FlowRun) -> str | None:
    keys = [k for key in run.empirical_policy.pause_keys or () if (k := parse_pause_key(key))]
    if not keys or run.state is None or not run.state.is_paused():
        return None
    return max(keys, key=lambda k: k[1])[0]


def _markdown(report: ReconcileReport) -> str:
    rows = [(s, f"concluded: {o}") for s, o in sorted(report.concluded.items())]
    rows += [(s, "waiting for review") for s in report.waiting]
    rows += [(s, "stalled before review: run its transition again") for s in report.stalled]
    rows += [(s, f"merged, not as reviewed: {m}") for s, m in sorted(report.unreviewed.items())]
    lines = ["### Reconciliation", ""]
    if rows:
        lines += ["| service | state |", "|---|---|", *(f"| {s} | {t} |" for s, t in rows), ""]
    else:
        lines += ["Nothing under way.", ""]
    lines.append(f"Resumed flow runs: {', '.join(report.resumed_flow_runs) or 'none'}.")
    lines.append(f"Leaked resources: {'; '.join(report.leaks) if report.leaks else 'none'}.")
    return "\n".join(lines) + "\n"
