"""draft -> in-delivery -> (proposed change merged) -> active."""

from __future__ import annotations

from prefect import flow

from allocation import lifecycle
from flows.allocate import allocate_and_review
from flows.common import run_name
from flows.params import DeliverParams, TransitionResult


@flow(name="deliver", flow_run_name=run_name("deliver"), persist_result=False, log_prints=False)
async def deliver(params: DeliverParams) -> TransitionResult:
    """Allocate VLAN, prefix, port and gateway on the service's deliver branch, open a proposed change
    carrying the plan, wait for the merge. The result lists what the customer gets."""
    return await allocate_and_review(params.service_identifier, lifecycle.DELIVER, params.review)
