"""Record a new draft service: what the request form and the API call."""

from __future__ import annotations

from prefect import flow

from allocation.intent import ServiceRequest
from flows import tasks
from flows.common import inventory_session, run_name
from flows.params import Outcome, TransitionResult


@flow(name="request", flow_run_name=run_name("request"), persist_result=False)
async def request(params: ServiceRequest) -> TransitionResult:
    """Idempotent for the same request. An unknown site or an identifier already used for another
    account is refused with a domain error before anything is recorded."""
    async with inventory_session() as inventory:
        service = await tasks.record_request(params, inventory)
    return TransitionResult(
        service_identifier=service.service_identifier,
        transition="request",
        outcome=Outcome.DONE,
        status=service.status,
        message=f"{service.service_identifier} recorded as {service.status.value} "
        f"({service.site}, {service.bandwidth.mbps} Mbit/s, {service.ip_package.value})",
    )
