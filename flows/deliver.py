"""draft -> in-delivery -> (proposed change merged) -> active."""

from __future__ import annotations

from prefect import flow

from allocation.results import TransitionResult
from allocation.steps import Changes
from allocation.transitions import DELIVER
from flows.engine import run_name, run_transition
from flows.params import DeliverParams, LocalWait


@flow(name="deliver", flow_run_name=run_name("deliver"), persist_result=False, description=DELIVER.summary)
async def deliver(params: DeliverParams, local_wait: LocalWait | None = None) -> TransitionResult:
    """Allocate VLAN, prefix, port and gateway on the service's branch, open the proposed change,
    wait for the architect. The result, and the run's artifact, say what the customer gets."""
    return await run_transition(DELIVER, params.service_identifier, Changes(), local_wait)
