"""Record a new draft service: what the request form and the API call."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from allocation import intake
from allocation.intent import ServiceRequest, ServiceStatus
from allocation.results import Outcome, TransitionResult
from flows.engine import inventory_session, run_name

SERVICE_REQUESTED = "factory.service.requested"


@task(name="record request", cache_policy=NO_CACHE, persist_result=False)
async def record(request: ServiceRequest) -> tuple[str, ServiceStatus, bool]:
    async with inventory_session() as inventory:
        service, created = await intake.record(request, inventory)
    return service.service_identifier, service.status, created


@flow(name="request", flow_run_name=run_name("request"), persist_result=False)
async def request(params: ServiceRequest, announce: bool = False) -> TransitionResult:
    """Record the request as a draft. The same request again changes nothing; the identifier asked for
    with other values, an unknown site, or a request the inventory cannot serve now is refused before
    anything is recorded. With ``announce`` a newly recorded service emits ``factory.service.requested``
    (the deliver deployment's trigger)."""
    identifier, status, created = await record(params)
    if announce and created:
        emit_event(
            SERVICE_REQUESTED,
            resource={
                "prefect.resource.id": f"factory.service.{identifier}",
                "factory.service.identifier": identifier,
            },
            payload={
                "site": params.site,
                "bandwidth": params.bandwidth.value,
                "ip_package": params.ip_package.value,
            },
        )
    verb = "recorded" if created else "already recorded"
    return TransitionResult(
        service_identifier=identifier,
        transition="request",
        outcome=Outcome.DONE,
        status=status,
        message=f"{identifier} {verb} as {status.value} ({params.site}, {params.bandwidth.mbps} Mbit/s, "
        f"{params.ip_package.value})",
    )
