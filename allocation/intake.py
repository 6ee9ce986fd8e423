"""A request for a service, answered the same way wherever it comes from: the CLI's ``plan`` and
``request``, the portal's Preview and Request, the JSON API and the request flow.

An identifier names one service for life. The same request again is the same service (a double
click, a CRM retrying); the identifier asked for with other values is refused, with a pointer to
``modify`` when the service is live. A request that cannot be served now (unknown site, no port
for the bandwidth, a pool exhausted) is refused before anything is recorded, and a request that
loses a race for the last resource during its delivery leaves no record either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from allocation import core
from allocation.errors import AllocationError, ServiceConflict
from allocation.intent import ServiceRequest, ServiceStatus
from allocation.inventory import Inventory
from allocation.model import MAIN, Service
from allocation.results import TransitionResult


async def check(request: ServiceRequest, inventory: Inventory) -> core.Plan:
    """What the request gets (reserves nothing), or the domain error that refuses it."""
    view = await inventory.planning_view(request.service_identifier, MAIN, site=request.site)
    if view.service is not None:
        refuse_if_other(view.service, request)
    return core.plan_from(request, view)


def refuse_if_other(existing: Service, request: ServiceRequest) -> None:
    """An identifier already in use accepts only the very same request."""
    if existing.status is ServiceStatus.DECOMMISSIONED:
        raise ServiceConflict(
            f"{existing.service_identifier} was decommissioned; a new service needs a new identifier"
        )
    if existing.as_request() == request:
        return
    held = (
        f"account {existing.account_reference} at {existing.site}, {existing.bandwidth.mbps} Mbit/s, "
        f"{existing.ip_package.value}"
    )
    same_customer = (existing.account_reference, existing.site) == (request.account_reference, request.site)
    if same_customer and existing.status is not ServiceStatus.DRAFT:
        raise ServiceConflict(
            f"{existing.service_identifier} is {existing.status.value} ({held}): a live service is changed "
            f"with `factory modify {existing.service_identifier} --bandwidth ... --package ...`"
        )
    raise ServiceConflict(f"{existing.service_identifier} exists already ({existing.status.value}: {held})")


async def record(
    request: ServiceRequest, inventory: Inventory, *, requested_by: str | None = None
) -> tuple[Service, bool]:
    """Record the request as a draft on main, with who asked; (service, whether this call created it).
    One read (what a plan needs, and the service if it exists) and one write for a new service."""
    view = await inventory.planning_view(request.service_identifier, MAIN, site=request.site)
    if view.service is not None:
        refuse_if_other(view.service, request)
        return view.service, False
    core.plan_from(request, view)
    return await inventory.create_service(request, requested_by=requested_by), True


async def request_and_deliver(
    request: ServiceRequest,
    inventory: Inventory,
    deliver: Callable[[str], Awaitable[TransitionResult]],
    *,
    requested_by: str | None = None,
) -> TransitionResult:
    """Record the request and deliver it up to its proposed change (or through it). A delivery refused
    for lack of a resource (a race lost since the check) withdraws the draft this call recorded."""
    service, created = await record(request, inventory, requested_by=requested_by)
    try:
        return await deliver(service.service_identifier)
    except AllocationError:
        if created:
            await inventory.withdraw_service(service.service_identifier)
        raise
