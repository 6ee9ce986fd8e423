"""What the form and the API do, in one place: read the request list, preview, submit a request."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import ValidationError

from allocation import core, intake
from allocation.errors import (
    AllocationError,
    NoPortAvailable,
    ServiceConflict,
    UnknownService,
    UnknownSite,
)
from allocation.intent import ServiceRequest, ServiceStatus, field_messages
from allocation.inventory import Inventory
from allocation.model import MAIN, ProposedChange, Service
from allocation.results import Handover, TransitionResult
from allocation.settings import FactorySettings
from allocation.steps import read_service
from allocation.transitions import underway
from flows import submit as submitting

# Statuses during which a proposed change is (or will be) under review.
IN_TRANSITION = frozenset({ServiceStatus.IN_DELIVERY, ServiceStatus.IN_DECOMMISSIONING})


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
    found = await underway(service, inventory)
    if found is None or found.change is None:
        return None
    return UnderReview(transition=found.transition.name, branch=found.branch, change=found.change)


async def rows(inventory: Inventory) -> list[Row]:
    services = sorted(await inventory.list_services(MAIN), key=lambda s: s.service_identifier)
    return [Row(service=s, review=await review_of(s, inventory)) for s in services]


async def row(identifier: str, inventory: Inventory) -> Row:
    """Raises UnknownService."""
    service = await read_service(inventory, identifier.strip().upper())
    return Row(service=service, review=await review_of(service, inventory))


def parse(fields: dict[str, str]) -> ServiceRequest:
    """The form's fields as a request; raises FormErrors with a message per field."""
    try:
        return ServiceRequest.model_validate(fields)
    except ValidationError as error:
        raise FormErrors(field_messages(error)) from None


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
    """What the request would get: the same answer the CLI's plan and the API give."""
    return await intake.check(request, inventory)


async def submit(
    request: ServiceRequest, inventory: Inventory, settings: FactorySettings
) -> TransitionResult:
    """Record the request and run its delivery until the proposed change is open.

    Idempotent: the same request again (a double click, a CRM retrying) gives the same result. An
    identifier already used for another request is refused, and so is a request the inventory
    cannot serve now, before anything is recorded; a request that loses a race for the last
    resource during its delivery leaves no record either."""
    _export(settings)

    async def deliver(identifier: str) -> TransitionResult:
        return await submitting.transition("deliver", identifier, inventory)

    return await intake.request_and_deliver(request, inventory, deliver)


def _export(settings: FactorySettings) -> None:
    # The flows open the inventory from configuration (FACTORY_BACKEND, FACTORY_DB), as for the CLI:
    # make it the portal's, which create_app may have been given explicitly.
    os.environ["FACTORY_BACKEND"] = settings.backend
    if settings.db is not None:
        os.environ["FACTORY_DB"] = str(settings.db)
