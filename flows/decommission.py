"""active -> in-decommissioning -> (proposed change merged) -> decommissioned, every resource back."""

from __future__ import annotations

from prefect import flow

from allocation.results import TransitionResult
from allocation.steps import Changes
from allocation.transitions import DECOMMISSION
from flows.engine import run_name, run_transition
from flows.params import DecommissionParams, LocalWait


@flow(
    name="decommission",
    flow_run_name=run_name("decommission"),
    persist_result=False,
    description=DECOMMISSION.summary,
)
async def decommission(params: DecommissionParams, local_wait: LocalWait | None = None) -> TransitionResult:
    """Release gateway, port, prefix and VLAN on the service's branch; they return to their pools
    when the proposed change is merged."""
    return await run_transition(DECOMMISSION, params.service_identifier, Changes(), local_wait)
