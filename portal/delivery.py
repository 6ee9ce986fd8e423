"""What the form and the API do, in one place: read the request list, preview, submit a request."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import ValidationError

from allocation import core, lifecycle
from allocation.errors import (
    AllocationError,
    NoPortAvailable,
    ServiceConflict,
    UnknownService,
    UnknownSite,
)
from allocation.intent import ServiceRequest, ServiceStatus
from allocation.inventory import Inventory
from allocation.model import MAIN, ProposedChange, Service
from allocation.settings import FactorySettings
from flows import Handover, Review, TransitionResult, request_service, run_transition

# Statuses during which a proposed change is (or will be) under review.
IN_TRANSITION = frozenset({ServiceStatus.IN_DELIVERY, ServiceStatus.IN_DECOMMISSIONING})

# What to tell a person for pydantic's terse messages, per field of the form.
_FIELD_HINTS = {
    "service_identifier": "must look like DIA-0042: an upper-case product prefix, a dash, digits",
    "account_reference": "give the customer account (1 to 64 characters), e.g. ACC-1234",
    "site": "choose one of the sites",
    "bandwidth": "choose 100M, 1G or 10G",
    "ip_package": "choose small, medium or large",
}


@dataclass(frozen=True)
class UnderReview:
    """The proposed change a service is waiting on, and the transition it belongs to."""

    transition: str
    branch: str
    change: ProposedChange


@dataclass(frozen=True)
class Row:
    service: Service
    review: UnderReview | None

    @property
    def handover(self) -> Handover | None:
        return Handover.of(self.service) if self.service.status is ServiceStatus.ACTIVE else None


class FormErrors(Exception):
    """Messages per form field ("" for the top of the form)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k or 'request'}: {v}" for k, v in errors.items()))
        self.errors = errors


async def sites(inventory: Inventory) -> list[str]:
    return sorted({usage.site for usage in await inventory.port_usage()})


async def review_of(service: Service, inventory: Inventory) -> UnderReview | None:
    if service.status not in IN_TRANSITION:
        return None
    current = await lifecycle.current_transition(service.service_identifier, inventory)
    if current is None:
        return None
    transition, branch, change = current
    return UnderReview(transition=transition.name, branch=branch, change=change)


async def rows(inventory: Inventory) -> list[Row]:
    services = sorted(await inventory.list_services(MAIN), key=lambda s: s.service_identifier)
    return [Row(service=s, review=await review_of(s, inventory)) for s in services]


async def row(identifier: str, inventory: Inventory) -> Row:
    """Raises UnknownService."""
    service = await lifecycle.get_service(identifier.strip().upper(), inventory)
    return Row(service=service, review=await review_of(service, inventory))


def parse(fields: dict[str, str]) -> ServiceRequest:
    """The form's fields as a request; raises FormErrors with a message per field."""
    try:
        return ServiceRequest.model_validate(fields)
    except ValidationError as error:
        messages: dict[str, str] = {}
        for e in error.errors():
            field = str(e["loc"][0]) if e["loc"] else ""
            messages.setdefault(field, _FIELD_HINTS.get(field, e["msg"]))
        raise FormErrors(messages) from None


def field_of(error: AllocationError) -> str:
    """Which form field a domain error is about ("" for the top of the form)."""
    if isinstance(error, UnknownSite):
        return "site"
    if isinstance(error, NoPortAvailable):
        return "bandwidth"
    if isinstance(error, ServiceConflict | UnknownService):
        return "service_identifier"
    return ""  # an exhausted pool and the rest: about the inventory, not one field


async def preview(request: ServiceRequest, inventory: Inventory) -> core.Plan:
    return await core.plan(request, inventory)


async def submit(
    request: ServiceRequest, inventory: Inventory, settings: FactorySettings
) -> TransitionResult:
    """Record the request and run its delivery flow until the proposed change is open.

    Idempotent: the same request again (a double click, a CRM retrying) gives the same result.
    An identifier already used for another request is refused, and so is a request the inventory
    cannot serve now, before anything is recorded or any flow runs."""
    existing = await inventory.get_service(request.service_identifier, MAIN)
    if existing is not None and existing.as_request() != request:
        raise ServiceConflict(
            f"{request.service_identifier} exists already ({existing.status.value}: account "
            f"{existing.account_reference} at {existing.site}, {existing.bandwidth.mbps} Mbit/s, "
            f"{existing.ip_package.value})"
        )
    if existing is None:
        await core.plan(request, inventory)
    _export(settings)
    await request_service(request)
    return await run_transition("deliver", request.service_identifier, review=Review(timeout_seconds=0))


def _export(settings: FactorySettings) -> None:
    # The flows open the inventory from configuration (FACTORY_BACKEND, FACTORY_DB), as for the CLI:
    # make it the portal's, which create_app may have been given explicitly.
    os.environ["FACTORY_BACKEND"] = settings.backend
    if settings.db is not None:
        os.environ["FACTORY_DB"] = str(settings.db)
