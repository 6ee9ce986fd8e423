"""active -> in-delivery -> (proposed change merged) -> active, with a new bandwidth or IP package."""

from __future__ import annotations

from prefect import flow

from allocation import lifecycle
from flows.allocate import allocate_and_review
from flows.common import run_name
from flows.params import ModifyParams, TransitionResult


@flow(name="modify", flow_run_name=run_name("modify"), persist_result=False)
async def modify(params: ModifyParams) -> TransitionResult:
    """A new bandwidth keeps the port if it is fast enough, else moves to one that is; a new package
    takes a prefix of the new size and moves the gateway. What is replaced returns to its pool when
    the change is merged; a closed change leaves the service active with its old resources."""
    return await allocate_and_review(
        params.service_identifier,
        lifecycle.MODIFY,
        params.review,
        bandwidth=params.bandwidth,
        ip_package=params.ip_package,
    )
