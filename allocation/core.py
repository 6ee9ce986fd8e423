"""Plan, then apply: turn a request into VLAN, prefix, port and gateway, and give them back.

Every step reads what the branch already holds and only does what is missing, so any step can
run twice, or again after a crash, and change nothing the second time. A step reads once (a
planning view) and writes once (``Inventory.apply_changes``): the decisions between are pure.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from ipaddress import IPv4Network
from typing import Any

from pydantic import BaseModel, ConfigDict

from allocation import policy
from allocation.errors import (
    AllocationError,
    MissingDevice,
    NoPortAvailable,
    PoolExhausted,
    PortTaken,
    ServiceConflict,
    UnknownService,
)
from allocation.intent import ServiceRequest
from allocation.inventory import Inventory
from allocation.model import (
    MAIN,
    ROLES,
    Changes,
    Device,
    Gateway,
    Implementation,
    PlanningView,
    Port,
    PortAssignment,
    PrefixRequest,
    Role,
    Site,
    Vlan,
    VlanRequest,
)

# What each allocation step writes: what the site's pools and ports give, then the gateway built on it.
TAKEN: tuple[Role, ...] = ("vlan", "prefix", "port")
BUILT: tuple[Role, ...] = ("gateway",)

# How often a port is re-chosen when concurrent requests keep winning the race for it.
PORT_CLAIM_ATTEMPTS = 16


class Action(StrEnum):
    KEEP = "keep"
    ALLOCATE = "allocate"
    REPLACE = "replace"


class PlannedStep(BaseModel):
    model_config = ConfigDict(frozen=True)
    role: Role
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
    """Decide what the request gets, checking every resource is available. Raises domain errors.
    One read (a planning view of the request's site)."""
    view = await inventory.planning_view(request.service_identifier, branch, site=request.site)
    return plan_from(request, view)


def plan_in(view: PlanningView, identifier: str) -> Plan:
    """The plan for the service a planning view shows, as its branch holds it (a modify's new
    bandwidth or package is written there by begin)."""
    if view.service is None:
        raise UnknownService(identifier)
    return plan_from(view.service.as_request(), view)


def plan_from(request: ServiceRequest, view: PlanningView) -> Plan:
    """The plan of ``request`` from a planning view: pure policy, no I/O."""
    site = view.site
    current = view.current
    length = policy.prefix_length(request.ip_package)
    bandwidth = request.bandwidth.mbps
    steps: list[PlannedStep] = []

    if current.vlan is not None:
        steps.append(PlannedStep(role="vlan", action=Action.KEEP, detail=f"VLAN {current.vlan.vlan_id}"))
    elif view.room is None or view.room.get(site.vlan_pool, 0) >= 1:
        steps.append(
            PlannedStep(role="vlan", action=Action.ALLOCATE, detail=f"next ID from {site.vlan_pool!r}")
        )
    else:
        raise PoolExhausted(site.vlan_pool, "VLAN ID")

    if current.prefix is not None and current.prefix.prefixlen == length:
        steps.append(PlannedStep(role="prefix", action=Action.KEEP, detail=str(current.prefix)))
    elif view.room is None or view.room.get(site.prefix_pool, 0) >= 2 ** (32 - length):
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
        port = _choose_port(view, bandwidth)
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


def changes_for(plan: Plan, view: PlanningView, roles: Collection[Role] = ROLES) -> Changes:
    """What one step writes to bring the service's implementation, as ``view`` shows it, to ``plan``,
    for the given roles only: pure, decided from the fresh view (the plan may be older)."""
    current = view.current
    bandwidth = plan.request.bandwidth.mbps
    release: set[Role] = set()
    update: dict[str, Any] = {}

    new_vlan = current.vlan is None
    if "vlan" in roles and new_vlan:
        update["vlan"] = VlanRequest(pool=plan.site.vlan_pool, l2domain=plan.site.l2domain)

    new_prefix = current.prefix is None or current.prefix.prefixlen != plan.prefix_length
    if "prefix" in roles and new_prefix:
        if current.prefix is not None:
            release.add("prefix")
        update["prefix"] = PrefixRequest(pool=plan.site.prefix_pool, length=plan.prefix_length)

    held = current.port
    if held is not None and held.port.speed_mbps >= bandwidth:
        port = held.port
        if "port" in roles and (new_vlan or current.vlan is None or held.vlan_id != current.vlan.vlan_id):
            update["port"] = port  # configured again, for the service's (new) VLAN
    elif "port" in roles:
        if held is not None:
            release.add("port")  # moving to a faster port: the old one stays held until the merge
        port = _choose_port(view, bandwidth)
        update["port"] = port
    else:
        port = held.port if held is not None else plan.port

    if "gateway" in roles:
        router = _router(plan.site, port).name
        gateway = current.gateway
        in_place = (
            gateway is not None
            and not new_vlan
            and not new_prefix
            and current.prefix is not None
            and current.vlan is not None
            and gateway.device == router
            and gateway.address == policy.gateway_address(current.prefix)
            and gateway.vlan_id == current.vlan.vlan_id
        )
        if not in_place:
            if current.prefix is None and "prefix" not in update:
                raise ServiceConflict(f"{plan.request.service_identifier} has no prefix to put a gateway in")
            if gateway is not None:
                release.add("gateway")
            update["gateway"] = router
    return Changes(release=frozenset(release), **update)


async def _carry_out(
    plan: Plan,
    inventory: Inventory,
    branch: str,
    roles: Collection[Role] = ROLES,
    view: PlanningView | None = None,
) -> Implementation:
    """Read once (unless given a view just read), write what is missing; when a concurrent request
    wins the race for the chosen port, read again and choose another."""
    identifier = plan.request.service_identifier
    for _ in range(PORT_CLAIM_ATTEMPTS):
        if view is None:
            view = await inventory.planning_view(identifier, branch, site=plan.site.shortname)
        if view.service is None:
            raise UnknownService(identifier)
        try:
            return await inventory.apply_changes(
                identifier, changes_for(plan, view, roles), branch=branch, view=view
            )
        except PortTaken:
            view = None
    raise NoPortAvailable(plan.site.shortname, plan.request.bandwidth.mbps)


async def allocate_resources(
    plan: Plan, inventory: Inventory, branch: str, *, view: PlanningView | None = None
) -> Implementation:
    """What the service takes from the site: its VLAN ID and prefix from the pools, its port claimed
    and configured for the VLAN. One step, so that what Infrahub's pools choose is recorded in the
    step's second write (two writes in all); from ``view`` (the plan's, just read on ``branch``)
    when given."""
    implementation = await _carry_out(plan, inventory, branch, TAKEN, view)
    assert implementation.vlan is not None and implementation.prefix is not None
    assert implementation.port is not None
    return implementation


async def allocate_gateway(
    plan: Plan, inventory: Inventory, branch: str, vlan: Vlan, prefix: IPv4Network, port: PortAssignment
) -> Gateway:
    gateway = (await _carry_out(plan, inventory, branch, BUILT)).gateway
    assert gateway is not None
    return gateway


async def apply(
    plan: Plan, inventory: Inventory, branch: str, *, view: PlanningView | None = None
) -> Implementation:
    """Carry out a plan on a branch: one read (none when given a planning view of the branch just
    read), then the backend's writes (two on Infrahub). A domain error half-way (a race lost to a
    concurrent request) puts the service's objects on the branch back as they were: nothing is left
    half-allocated."""
    try:
        return await _carry_out(plan, inventory, branch, view=view)
    except AllocationError:
        await inventory.discard_changes(plan.request.service_identifier, branch=branch)
        raise


def in_place(request: ServiceRequest, view: PlanningView) -> bool:
    """Whether the service holds, as ``view`` shows it, everything the request needs: nothing to write."""
    current = view.current
    vlan, prefix, port, gateway = current.vlan, current.prefix, current.port, current.gateway
    if vlan is None or prefix is None or port is None or gateway is None:
        return False
    router = view.site.device("edge", port.port.device_index)
    return (
        prefix.prefixlen == policy.prefix_length(request.ip_package)
        and port.port.speed_mbps >= request.bandwidth.mbps
        and port.vlan_id == vlan.vlan_id
        and router is not None
        and gateway
        == Gateway(
            device=router.name,
            interface=policy.gateway_interface_name(vlan.vlan_id),
            address=policy.gateway_address(prefix),
            vlan_id=vlan.vlan_id,
        )
    )


async def implement(
    identifier: str, inventory: Inventory, branch: str, *, view: PlanningView | None = None
) -> Implementation:
    """Plan and apply for a recorded service as ``branch`` holds it, in as few requests as possible:
    none when ``view`` (read already, as a generator's query is) shows everything in place; else the
    writes, after a read only when ``view`` lacks what an allocation decides from."""
    if view is not None and view.service is not None and in_place(view.service.as_request(), view):
        return view.current
    if view is None or not view.allocating:
        site = view.site.shortname if view is not None else None
        view = await inventory.planning_view(identifier, branch, site=site)
    if view.service is None:
        raise UnknownService(identifier)
    return await apply(plan_from(view.service.as_request(), view), inventory, branch, view=view)


async def release(identifier: str, inventory: Inventory, branch: str) -> None:
    """Give back everything a service holds (gateway, port, prefix, VLAN): one read, one write."""
    await inventory.apply_changes(identifier, Changes(release=frozenset(ROLES)), branch=branch)


def _choose_port(view: PlanningView, bandwidth: int) -> Port:
    port = policy.choose_port(view.free_ports, view.switch_load, bandwidth)
    if port is None:
        raise NoPortAvailable(view.site.shortname, bandwidth)
    return port


def _router(site: Site, port: Port) -> Device:
    router = site.device("edge", port.device_index)
    if router is None:
        raise MissingDevice(site.shortname, "edge", port.device_index)
    return router


def _port_label(port: Port) -> str:
    return f"{port.device} {port.name} ({port.speed_mbps} Mbit/s)"
