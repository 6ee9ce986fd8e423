"""What the inventory holds, as the core sees it. Backends translate to and from these."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from ipaddress import IPv4Interface, IPv4Network
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from allocation.intent import Bandwidth, IpPackage, ServiceRequest, ServiceStatus

MAIN = "main"

Role = Literal["vlan", "prefix", "port", "gateway"]
ROLES: tuple[Role, ...] = ("vlan", "prefix", "port", "gateway")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Device(_Frozen):
    name: str
    role: str
    index: int | None = None


class Port(_Frozen):
    """A physical customer port on a core switch."""

    id: str
    device: str
    name: str
    speed_mbps: int
    device_index: int


class Site(_Frozen):
    shortname: str
    name: str
    devices: tuple[Device, ...]
    vlan_pool: str
    prefix_pool: str
    l2domain: str

    def device(self, role: str, index: int) -> Device | None:
        return next((d for d in self.devices if d.role == role and d.index == index), None)


class Vlan(_Frozen):
    vlan_id: int
    name: str
    l2domain: str


class PortAssignment(_Frozen):
    port: Port
    vlan_id: int


class Gateway(_Frozen):
    device: str
    interface: str
    address: IPv4Interface
    vlan_id: int


class Implementation(_Frozen):
    """Everything allocated to one service on one branch."""

    vlan: Vlan | None = None
    prefix: IPv4Network | None = None
    port: PortAssignment | None = None
    gateway: Gateway | None = None

    @property
    def empty(self) -> bool:
        return self.vlan is None and self.prefix is None and self.port is None and self.gateway is None

    @property
    def complete(self) -> bool:
        return None not in (self.vlan, self.prefix, self.port, self.gateway)


class Service(_Frozen):
    service_identifier: str
    account_reference: str
    site: str
    bandwidth: Bandwidth
    ip_package: IpPackage
    status: ServiceStatus
    implementation: Implementation = Implementation()
    requested_by: str | None = None  # the account that recorded the request

    def as_request(self) -> ServiceRequest:
        return ServiceRequest(
            service_identifier=self.service_identifier,
            account_reference=self.account_reference,
            site=self.site,
            bandwidth=self.bandwidth,
            ip_package=self.ip_package,
        )


class ChangeState(StrEnum):
    OPEN = "open"
    MERGED = "merged"
    CLOSED = "closed"


class ProposedChange(_Frozen):
    id: str
    name: str
    branch: str
    state: ChangeState
    description: str = ""
    created_at: datetime | None = None
    decided_by: str | None = None  # the account that merged or closed it


class PoolUsage(_Frozen):
    name: str
    kind: str  # "number" or "prefix"
    used: int
    total: int  # VLAN IDs, or addresses for a prefix pool

    @property
    def utilisation(self) -> float:
        return self.used / self.total if self.total else 0.0


class PortUsage(_Frozen):
    site: str
    device: str
    speed_mbps: int
    free: int
    used: int


class PlanningView(_Frozen):
    """Everything a step reads before it plans, allocates or opens a review: one read on a remote
    backend (``Inventory.planning_view``).

    ``service`` is the service as the branch holds it (None when not recorded), ``site`` its site
    (or the one asked for). ``free_ports`` holds the first free customer port of each core switch
    and speed, for every speed (the policy filters by bandwidth); ports another service holds on any
    branch are not free, a port this service claimed is. ``switch_load`` counts the customer ports
    held per core switch index, ``room`` what each of the site's pools has left (VLAN IDs, or
    addresses of a prefix pool; None when not counted: the pools answer when asked), ``allocating``
    whether the view holds what an allocation decides from (candidate ports and load), ``changes``
    the proposed changes of every branch of the service (any transition, any attempt), oldest first.

    ``handle`` is the backend's own record of what it read, so that a write decided from this view
    needs no second read (``Inventory.apply_changes``); it is not part of the view's value.
    """

    service: Service | None
    site: Site
    free_ports: tuple[Port, ...] = ()
    switch_load: Mapping[int, int] = Field(default_factory=dict)
    room: Mapping[str, int] | None = None
    allocating: bool = False
    changes: tuple[ProposedChange, ...] = ()
    handle: Any = Field(default=None, exclude=True, repr=False)

    @property
    def current(self) -> Implementation:
        return self.service.implementation if self.service else Implementation()


class VlanRequest(_Frozen):
    pool: str
    l2domain: str


class PrefixRequest(_Frozen):
    pool: str
    length: int


class Changes(_Frozen):
    """The writes of one step for one service on one branch, decided by the core from a planning
    view and carried out by the backend in as few requests as it can (``Inventory.apply_changes``).

    First ``release``: the roles whose current resource is given back (replaced, or decommissioned).
    Then what is allocated: a VLAN ID from ``vlan``, a prefix from ``prefix`` (linked to the VLAN),
    ``port`` claimed for the service (atomically: ``PortTaken`` if another service holds it) and
    configured as an access port of the VLAN, and a gateway on the edge router ``gateway`` at the
    first usable host of the prefix, on an L3 interface named for the VLAN and linked to it. A field
    left empty keeps what the service holds.
    """

    release: frozenset[Role] = frozenset()
    vlan: VlanRequest | None = None
    prefix: PrefixRequest | None = None
    port: Port | None = None
    gateway: str | None = None

    @property
    def empty(self) -> bool:
        return not self.release and all(v is None for v in (self.vlan, self.prefix, self.port, self.gateway))
