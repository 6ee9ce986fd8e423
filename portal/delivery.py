"""What the pages and the API do, in one place: read the request list a page at a time, preview and
submit a request, ask an active service to change or to be decommissioned, read capacity.

Validation and the lifecycle are the core's (``allocation.intake``, the transition declarations run
through ``flows.submit``); this module only shapes what they answer for the pages."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from allocation import core, intake
from allocation.config import render_configs
from allocation.errors import (
    AllocationError,
    NoPortAvailable,
    ServiceConflict,
    UnknownService,
    UnknownSite,
)
from allocation.intent import (
    SITE_PATTERN,
    Bandwidth,
    IpPackage,
    ServiceRequest,
    ServiceStatus,
    field_messages,
)
from allocation.inventory import Inventory
from allocation.model import MAIN, Implementation, PoolUsage, PortUsage, ProposedChange, Service
from allocation.policy import TransitionName
from allocation.results import Handover, TransitionResult
from allocation.settings import FactorySettings
from allocation.steps import Changes, read_service
from allocation.transitions import underway
from flows import submit as submitting

PAGE_SIZE = 20  # rows of the request list: 10,000 services are 500 pages

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


@dataclass(frozen=True)
class Filters:
    """What the request list is narrowed to; ``None`` is every value."""

    status: ServiceStatus | None = None
    site: str | None = None


def filters(status: str, site: str) -> Filters:
    """The list's filters from its URL (``?status=active&site=par01``; empty is any); ValueError."""
    try:
        chosen = ServiceStatus(status) if status else None
    except ValueError:
        known = ", ".join(s.value for s in ServiceStatus)
        raise ValueError(f"unknown status {status!r} (known: {known})") from None
    if site and not re.fullmatch(SITE_PATTERN, site):
        raise ValueError(f"{site!r} is not a site short name such as par01")
    return Filters(status=chosen, site=site or None)


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    number: int  # 1-based
    size: int
    total: int  # services matching the filters

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def first_row(self) -> int:
        return (self.number - 1) * self.size + 1 if self.total else 0

    @property
    def last_row(self) -> int:
        return min(self.number * self.size, self.total)


@dataclass(frozen=True)
class Holding:
    """One line of the table of what a service holds: now on main, and what its change proposes."""

    resource: str
    now: str
    proposed: str | None = None

    @property
    def changed(self) -> bool:
        return self.proposed is not None and self.proposed != self.now


class FormErrors(Exception):
    """Messages per form field ("" for the top of the form)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k or 'request'}: {v}" for k, v in errors.items()))
        self.errors = errors


# ---------------------------------------------------------------------- reading
async def sites(inventory: Inventory) -> list[str]:
    return await inventory.list_sites()


async def review_of(service: Service, inventory: Inventory) -> UnderReview | None:
    if service.status not in IN_TRANSITION:
        return None
    found = await underway(service, inventory)
    if found is None or found.change is None:
        return None
    return UnderReview(transition=found.transition.name, branch=found.branch, change=found.change)


async def page(inventory: Inventory, filters: Filters, number: int, size: int = PAGE_SIZE) -> Page:
    """One page of the request list (a page past the last shows the last)."""
    total = await inventory.count_services(MAIN, status=filters.status, site=filters.site)
    number = min(max(number, 1), max(1, math.ceil(total / size)))
    services = await inventory.list_services(
        MAIN, status=filters.status, site=filters.site, offset=(number - 1) * size, limit=size
    )
    rows = [Row(service=s, review=await review_of(s, inventory)) for s in services]
    return Page(rows=rows, number=number, size=size, total=total)


async def row(identifier: str, inventory: Inventory) -> Row:
    """Raises UnknownService."""
    service = await read_service(inventory, identifier.strip().upper())
    return Row(service=service, review=await review_of(service, inventory))


async def proposed(row: Row, inventory: Inventory) -> Service | None:
    """The service as its open proposed change would make it (None when nothing is under review)."""
    if row.review is None:
        return None
    return await inventory.get_service(row.service.service_identifier, row.review.branch)


@dataclass(frozen=True)
class DeviceConfig:
    """The configuration a service puts on one device: now on main, and what its change proposes."""

    device: str
    now: str | None
    proposed: str | None = None

    @property
    def changed(self) -> bool:
        return self.now != self.proposed


def configurations(service: Service, proposed: Service | None) -> list[DeviceConfig]:
    """Every device the service touches on main or in its change, with the rendered configuration
    (``allocation.config``: the templates Infrahub renders the device artifacts with)."""
    now = render_configs(service)
    then = render_configs(proposed) if proposed is not None else {}
    devices = list(now) + [d for d in then if d not in now]
    return [DeviceConfig(d, now.get(d), then.get(d) if proposed is not None else None) for d in devices]


def holdings(row: Row, proposed: Service | None) -> list[Holding]:
    """What the service holds on main, beside what its open proposed change (``proposed``, the
    service on the change's branch) would make of it."""
    service = row.service
    return [
        Holding(resource, now, None if proposed is None else then)
        for (resource, now), (_, then) in zip(
            _described(service, service.implementation),
            _described(proposed or service, (proposed or service).implementation),
            strict=True,
        )
    ]


def _described(service: Service, impl: Implementation) -> list[tuple[str, str]]:
    port = impl.port.port if impl.port else None
    gateway = impl.gateway
    return [
        ("status", service.status.value),
        ("bandwidth", f"{service.bandwidth.mbps} Mbit/s"),
        ("IP package", service.ip_package.value),
        ("VLAN", f"{impl.vlan.vlan_id} ({impl.vlan.l2domain})" if impl.vlan else "-"),
        ("prefix", str(impl.prefix) if impl.prefix else "-"),
        ("port", f"{port.device} {port.name} ({port.speed_mbps} Mbit/s)" if port else "-"),
        ("gateway", f"{gateway.address} on {gateway.device} {gateway.interface}" if gateway else "-"),
    ]


@dataclass(frozen=True)
class SwitchPorts:
    site: str
    device: str
    free: int
    used: int
    speeds: str  # "4 x 1G, 2 x 10G free"

    @property
    def total(self) -> int:
        return self.free + self.used

    @property
    def used_share(self) -> float:
        return self.used / self.total if self.total else 0.0


def switches(usage: Sequence[PortUsage]) -> list[SwitchPorts]:
    """Customer ports per site and core switch, every speed together."""
    grouped: dict[tuple[str, str], list[PortUsage]] = {}
    for u in usage:
        grouped.setdefault((u.site, u.device), []).append(u)
    return [
        SwitchPorts(
            site=site,
            device=device,
            free=sum(u.free for u in found),
            used=sum(u.used for u in found),
            speeds=", ".join(f"{u.free} x {_speed(u.speed_mbps)}" for u in sorted(found, key=_by_speed)),
        )
        for (site, device), found in sorted(grouped.items())
    ]


async def capacity(inventory: Inventory) -> tuple[list[SwitchPorts], list[PoolUsage]]:
    return switches(await inventory.port_usage()), await inventory.pool_usage()


def _by_speed(usage: PortUsage) -> int:
    return usage.speed_mbps


def _speed(mbps: int) -> str:
    return f"{mbps // 1000}G" if mbps >= 1000 and mbps % 1000 == 0 else f"{mbps}M"


# ---------------------------------------------------------------------- asking
def parse(fields: dict[str, str]) -> ServiceRequest:
    """The form's fields as a request; raises FormErrors with a message per field."""
    try:
        return ServiceRequest.model_validate(fields)
    except ValidationError as error:
        raise FormErrors(field_messages(error)) from None


def parse_changes(bandwidth: str, ip_package: str) -> Changes:
    """A modify form's fields; raises FormErrors. An empty field keeps what the service has."""
    errors: dict[str, str] = {}
    try:
        new_bandwidth = Bandwidth(bandwidth) if bandwidth else None
    except ValueError:
        new_bandwidth, errors["bandwidth"] = None, "choose 100 (100M), 1000 (1G) or 10000 (10G)"
    try:
        new_package = IpPackage(ip_package) if ip_package else None
    except ValueError:
        new_package, errors["ip_package"] = None, "choose small, medium or large"
    if errors:
        raise FormErrors(errors)
    return Changes(bandwidth=new_bandwidth, ip_package=new_package)


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
    request: ServiceRequest,
    inventory: Inventory,
    settings: FactorySettings,
    *,
    requested_by: str | None = None,
) -> TransitionResult:
    """Record the request and run its delivery until the proposed change is open.

    Idempotent: the same request again (a double click, a CRM retrying) gives the same result. An
    identifier already used for another request is refused, and so is a request the inventory
    cannot serve now, before anything is recorded; a request that loses a race for the last
    resource during its delivery leaves no record either."""
    _export(settings)

    async def deliver(identifier: str) -> TransitionResult:
        return await submitting.transition("deliver", identifier, inventory)

    return await intake.request_and_deliver(request, inventory, deliver, requested_by=requested_by)


async def change(
    name: TransitionName,
    identifier: str,
    inventory: Inventory,
    settings: FactorySettings,
    changes: Changes | None = None,
) -> TransitionResult:
    """Run ``modify`` or ``decommission`` of a service up to its open proposed change: the same
    transition, checks and refusals as ``factory modify`` / ``factory decommission``."""
    _export(settings)
    return await submitting.transition(name, identifier, inventory, changes=changes)


def _export(settings: FactorySettings) -> None:
    # The flows open the inventory from configuration (FACTORY_BACKEND, FACTORY_DB), as for the CLI:
    # make it the portal's, which create_app may have been given explicitly.
    os.environ["FACTORY_BACKEND"] = settings.backend
    if settings.db is not None:
        os.environ["FACTORY_DB"] = str(settings.db)
