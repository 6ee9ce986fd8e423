"""What the Dedicated Internet generator does, independent of how Infrahub calls it: bring a
service's implementation on a branch to what the core plans for it."""

from __future__ import annotations

from allocation import core
from allocation.errors import UnknownService
from allocation.intent import ServiceStatus
from allocation.inventory import Inventory
from allocation.model import MAIN, Implementation, PlanningView

# A service being retired (or retired) has its resources released on its branch: implementing it
# there again would undo the decommission under review.
IMPLEMENTABLE = frozenset({ServiceStatus.DRAFT, ServiceStatus.IN_DELIVERY, ServiceStatus.ACTIVE})


class Skipped(Exception):
    """Nothing to do for this service on this branch; the message says why."""


async def implement(
    identifier: str, inventory: Inventory, branch: str, *, view: PlanningView | None = None
) -> Implementation:
    """Plan and apply on ``branch``. Idempotent: on a branch the delivery flow already allocated,
    this changes nothing (and, given the ``view`` the generator's query read, sends nothing). Never on
    main: every allocation goes through a reviewed branch."""
    if branch in ("", MAIN):
        raise Skipped(f"{identifier}: generators allocate on a branch under review, never on {MAIN}")
    if view is None:
        try:
            view = await inventory.planning_view(identifier, branch, allocating=False)
        except UnknownService as missing:
            raise Skipped(f"{identifier}: no such service on {branch}") from missing
    service = view.service
    if service is None:
        raise Skipped(f"{identifier}: no such service on {branch}")
    if service.status not in IMPLEMENTABLE:
        raise Skipped(f"{identifier} is {service.status.value} on {branch}: nothing to implement")
    return await core.implement(identifier, inventory, branch, view=view)


def describe(identifier: str, impl: Implementation) -> str:
    parts = [
        f"VLAN {impl.vlan.vlan_id}" if impl.vlan else None,
        str(impl.prefix) if impl.prefix else None,
        f"{impl.port.port.device} {impl.port.port.name}" if impl.port else None,
        f"gateway {impl.gateway.address} on {impl.gateway.device}" if impl.gateway else None,
    ]
    return f"{identifier}: " + ", ".join(p for p in parts if p)
