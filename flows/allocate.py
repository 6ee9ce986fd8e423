"""The body shared by deliver and modify: allocation tasks on the transition's branch, then review."""

from __future__ import annotations

from allocation import lifecycle
from allocation.errors import AllocationError
from allocation.intent import Bandwidth, IpPackage
from flows import review, tasks
from flows.common import finish, inventory_session
from flows.params import Outcome, Review, TransitionResult


async def allocate_and_review(
    identifier: str,
    transition: lifecycle.Transition,
    policy: Review,
    *,
    bandwidth: Bandwidth | None = None,
    ip_package: IpPackage | None = None,
) -> TransitionResult:
    async with inventory_session() as inventory:
        resumed = await review.resumed_review()
        if resumed is not None:
            resumed_branch, suspensions = resumed
            decided = await review.wait(
                identifier, transition, inventory, resumed_branch, None, policy, suspensions=suspensions
            )
            return await finish(
                identifier, transition, inventory, decided.outcome, resumed_branch, decided.change_id
            )

        branch = await tasks.begin(identifier, transition, inventory, bandwidth, ip_package)
        if branch is None:
            return await finish(
                identifier,
                transition,
                inventory,
                Outcome.DONE,
                None,
                None,
                f"{identifier}: nothing to {transition.name}",
            )
        try:
            plan = await tasks.plan(identifier, inventory, branch)
            vlan = await tasks.allocate_vlan(plan, inventory, branch)
            prefix = await tasks.allocate_prefix(plan, inventory, branch, vlan)
            port = await tasks.allocate_port(plan, inventory, branch, vlan)
            await tasks.allocate_gateway(plan, inventory, branch, vlan, prefix, port)
        except AllocationError:
            # A race lost to a concurrent request: give back what this branch took, status back.
            await tasks.abandon(identifier, transition, inventory, branch)
            raise
        await tasks.mark_target(identifier, transition, inventory, branch)
        decided = await review.review(identifier, transition, inventory, branch, policy)
        return await finish(identifier, transition, inventory, decided.outcome, branch, decided.change_id)
