"""Plan, then apply: turn a request into VLAN, prefix, port and gateway, and give them back.

Every step reads what the branch already holds and only does what is missing, so any step can
run twice, or again after a crash, and change nothing the second time.
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Network

from pydantic import BaseModel, ConfigDict

from allocation import policy
from allocation.errors import (
    AllocationError,
    MissingDevice,
    NoPortAvailable,
    PoolExhausted,
    PortTaken,
    UnknownService,
)
from allocation.intent import ServiceRequest
from allocation.inventory import Inventory
from allocation.model import MAIN, Device, Gateway, Implementation, Port, PortAssignment, Site, Vlan

# How often a port is re-chosen when concurrent requests keep winning the race for it.
PORT_CLAIM_ATTEMPTS = 16


class Action(StrEnum):
    KEEP = "keep"
    ALLOCATE = "allocate"
    REPLACE = "replace"


class PlannedStep(BaseModel):
    model_config = ConfigDict(frozen=True)
    role: policy.Role
    action: Action
    detail: str


class Plan(BaseModel):
    """What a request would get. Reserves nothing; the same object feeds previews and reviews."""

    model_config = ConfigDict(frozen=True)

    request: ServiceRequest
    site: Site
    prefix_length: int
    port: Port
    router: Device
    current: Implementation
    steps: tuple[PlannedStep, ...]


async def plan(request: ServiceRequest, inventory: Inventory, branch: str = MAIN) -> Plan:
    """Decide what the request gets, checking every resource is available. Raises domain errors."""
    site = await inventory.get_site(request.site)
    service = await inventory.get_service(request.service_identifier, branch)
    current = service.implementation if service else Implementation()
    length = policy.prefix_length(request.ip_package)
    bandwidth = request.bandwidth.mbps
    steps: list[PlannedStep] = []

    if current.vlan is not None:
        steps.append(PlannedStep(role="vlan", action=Action.KEEP, detail=f"VLAN {current.vlan.vlan_id}"))
    elif await inventory.pool_has_room(site.vlan_pool):
        steps.append(
            PlannedStep(role="vlan", action=Action.ALLOCATE, detail=f"next ID from {site.vlan_pool!r}")
        )
    else:
        raise PoolExhausted(site.vlan_pool, "VLAN ID")

    if current.prefix is not None and current.prefix.prefixlen == length:
        steps.append(PlannedStep(role="prefix", action=Action.KEEP, detail=str(current.prefix)))
    elif await inventory.pool_has_room(site.prefix_pool, length):
        action = Action.ALLOCATE if current.prefix is None else Action.REPLACE
        steps.append(
            PlannedStep(role="prefix", action=action, detail=f"next /{length} from {site.prefix_pool!r}")
        )
    else:
        raise PoolExhausted(site.prefix_pool, f"/{length} prefix")

    if current.port is not None and current.port.port.speed_mbps >= bandwidth:
        port = current.port.port
        steps.append(PlannedStep(role="port", action=Action.KEEP, detail=_port_label(port)))
    else:
        port = await _choose_port(inventory, site, bandwidth)
        action = Action.ALLOCATE if current.port is None else Action.REPLACE
        steps.append(PlannedStep(role="port", action=action, detail=_port_label(port)))

    router = _router(site, port)
    gateway_action = Action.ALLOCATE if current.gateway is None else Action.KEEP
    if current.gateway is not None and (
        current.gateway.device != router.name or current.prefix is None or current.prefix.prefixlen != length
    ):
        gateway_action = Action.REPLACE
    steps.append(
        PlannedStep(
            role="gateway", action=gateway_action, detail=f"first host of the prefix on {router.name}"
        )
    )
    return Plan(
        request=request,
        site=site,
        prefix_length=length,
        port=port,
        router=router,
        current=current,
        steps=tuple(steps),
    )


async def allocate_vlan(plan: Plan, inventory: Inventory, branch: str) -> Vlan:
    return await inventory.ensure_vlan(
        plan.request.service_identifier, pool=plan.site.vlan_pool, l2domain=plan.site.l2domain, branch=branch
    )


async def allocate_prefix(plan: Plan, inventory: Inventory, branch: str, vlan: Vlan) -> IPv4Network:
    identifier = plan.request.service_identifier
    current = (await _implementation(inventory, identifier, branch)).prefix
    if current is not None and current.prefixlen != plan.prefix_length:
        await inventory.release_prefix(identifier, branch=branch)
    return await inventory.ensure_prefix(
        identifier, pool=plan.site.prefix_pool, length=plan.prefix_length, vlan=vlan, branch=branch
    )


async def allocate_port(plan: Plan, inventory: Inventory, branch: str, vlan: Vlan) -> PortAssignment:
    identifier = plan.request.service_identifier
    bandwidth = plan.request.bandwidth.mbps
    current = (await _implementation(inventory, identifier, branch)).port
    if current is not None and current.port.speed_mbps >= bandwidth:
        return await inventory.claim_port(identifier, port=current.port, vlan=vlan, branch=branch)
    if current is not None:
        # Moving to a faster port: the old one stays held until the move reaches main.
        await inventory.release_port(identifier, branch=branch)
    choice = plan.port
    for _ in range(PORT_CLAIM_ATTEMPTS):
        try:
            return await inventory.claim_port(identifier, port=choice, vlan=vlan, branch=branch)
        except PortTaken:
            choice = await _choose_port(inventory, plan.site, bandwidth)
    raise NoPortAvailable(plan.site.shortname, bandwidth)


async def allocate_gateway(
    plan: Plan, inventory: Inventory, branch: str, vlan: Vlan, prefix: IPv4Network, port: PortAssignment
) -> Gateway:
    identifier = plan.request.service_identifier
    router = _router(plan.site, port.port)
    address = policy.gateway_address(prefix)
    current = (await _implementation(inventory, identifier, branch)).gateway
    if current is not None and (current.device != router.name or current.address != address):
        await inventory.release_gateway(identifier, branch=branch)
    return await inventory.ensure_gateway(
        identifier, device=router.name, vlan=vlan, address=address, branch=branch
    )


async def apply(plan: Plan, inventory: Inventory, branch: str) -> Implementation:
    """Carry out a plan on a branch. A domain error half-way (a race lost to a concurrent request)
    puts the service's objects on the branch back as they were: nothing is left half-allocated."""
    try:
        vlan = await allocate_vlan(plan, inventory, branch)
        prefix = await allocate_prefix(plan, inventory, branch, vlan)
        port = await allocate_port(plan, inventory, branch, vlan)
        gateway = await allocate_gateway(plan, inventory, branch, vlan, prefix, port)
    except AllocationError:
        await inventory.discard_changes(plan.request.service_identifier, branch=branch)
        raise
    return Implementation(vlan=vlan, prefix=prefix, port=port, gateway=gateway)


async def release(identifier: str, inventory: Inventory, branch: str) -> None:
    """Give back everything a service holds, in the reverse order of allocation."""
    await inventory.release_gateway(identifier, branch=branch)
    await inventory.release_port(identifier, branch=branch)
    await inventory.release_prefix(identifier, branch=branch)
    await inventory.release_vlan(identifier, branch=branch)


async def _implementation(inventory: Inventory, identifier: str, branch: str) -> Implementation:
    service = await inventory.get_service(identifier, branch)
    if service is None:
        raise UnknownService(identifier)
    return service.implementation


async def _choose_port(inventory: Inventory, site: Site, bandwidth: int) -> Port:
    candidates = await inventory.free_ports(site.shortname, bandwidth)
    load = await inventory.switch_load(site.shortname)
    port = policy.choose_port(candidates, load, bandwidth)
    if port is None:
        raise NoPortAvailable(site.shortname, bandwidth)
    return port


def _router(site: Site, port: Port) -> Device:
    router = site.device("edge", port.device_index)
    if router is None:
        raise MissingDevice(site.shortname, "edge", port.device_index)
    return router


def _port_label(port: Port) -> str:
    return f"{port.device} {port.name} ({port.speed_mbps} Mbit/s)"
