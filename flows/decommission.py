"""active -> in-decommissioning -> (proposed change merged) -> decommissioned, every resource back."""

from __future__ import annotations

from prefect import flow

from allocation import lifecycle
from flows import review, tasks
from flows.common import finish, inventory_session, run_name
from flows.params import DecommissionParams, Outcome, TransitionResult

DECOMMISSION = lifecycle.DECOMMISSION


@flow(name="decommission", flow_run_name=run_name("decommission"), persist_result=False)
async def decommission(params: DecommissionParams) -> TransitionResult:
    """Release gateway, port, prefix and VLAN on the decommission branch (reverse order of allocation);
    they return to their pools when the proposed change is merged."""
    identifier = params.service_identifier
    async with inventory_session() as inventory:
        resumed = await review.resumed_review()
        if resumed is not None:
            resumed_branch, suspensions = resumed
            decided = await review.wait(
                identifier,
                DECOMMISSION,
                inventory,
                resumed_branch,
                None,
                params.review,
                suspensions=suspensions,
            )
            return await finish(
                identifier, DECOMMISSION, inventory, decided.outcome, resumed_branch, decided.change_id
            )

        branch = await tasks.begin(identifier, DECOMMISSION, inventory)
        if branch is None:
            return await finish(
                identifier,
                DECOMMISSION,
                inventory,
                Outcome.DONE,
                None,
                None,
                f"{identifier} is decommissioned",
            )
        await tasks.release_gateway(identifier, inventory, branch)
        await tasks.release_port(identifier, inventory, branch)
        await tasks.release_prefix(identifier, inventory, branch)
        await tasks.release_vlan(identifier, inventory, branch)
        await tasks.mark_target(identifier, DECOMMISSION, inventory, branch)
        decided = await review.review(identifier, DECOMMISSION, inventory, branch, params.review)
        return await finish(identifier, DECOMMISSION, inventory, decided.outcome, branch, decided.change_id)
