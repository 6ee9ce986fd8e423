"""Record a new draft service: what the request form and the API call."""

from __future__ import annotations

from prefect import flow
from prefect.events import emit_event

from allocation.intent import ServiceRequest
from flows import tasks
from flows.common import inventory_session, run_name
from flows.params import Outcome, TransitionResult

SERVICE_REQUESTED = "factory.service.requested"


@flow(name="request", flow_run_name=run_name("request"), persist_result=False)
async def request(params: ServiceRequest, announce: bool = False) -> TransitionResult:
    """Idempotent for the same request. With ``announce``, emits ``factory.service.requested``. An unknown site or an identifier already used for another
    account is refused with a domain error before anything is recorded."""
    async with inventory_session() as inventory:
        service = await tasks.record_request(params, inventory)
    if announce:  # served: the deliver deployment's trigger starts delivery
        emit_event(
            SERVICE_REQUESTED,
            resource={
                "prefect.resource.id": f"factory.service.{service.service_identifier}",
                "factory.service.identifier": service.service_identifier,
            },
            payload={
                "site": service.site,
                "bandwidth": service.bandwidth.value,
                "ip_package": service.ip_package.value,
            },
        )
    return TransitionResult(
        service_identifier=service.service_identifier,
        transition="request",
        outcome=Outcome.DONE,
        status=service.status,
        message=f"{service.service_identifier} recorded as {service.status.value} "
        f"({service.site}, {service.bandwidth.mbps} Mbit/s, {service.ip_package.value})",
    )
