"""active -> in-delivery -> (proposed change merged) -> active, with a new bandwidth or IP package."""

from __future__ import annotations

from prefect import flow

from allocation.results import TransitionResult
from allocation.steps import Changes
from allocation.transitions import MODIFY
from flows.engine import run_name, run_transition
from flows.params import LocalWait, ModifyParams


@flow(name="modify", flow_run_name=run_name("modify"), persist_result=False, description=MODIFY.summary)
async def modify(params: ModifyParams, local_wait: LocalWait | None = None) -> TransitionResult:
    """A new bandwidth keeps the port if it is fast enough, else moves to one that is; a new package
    takes a prefix of the new size and moves the gateway. What is replaced returns to its pool with
    the merge; a closed change leaves the service active with what it had."""
    changes = Changes(bandwidth=params.bandwidth, ip_package=params.ip_package)
    return await run_transition(MODIFY, params.service_identifier, changes, local_wait)
