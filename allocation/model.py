"""What the inventory holds, as the core sees it. Backends translate to and from these."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from ipaddress import IPv4Interface, IPv4Network

from pydantic import BaseModel, ConfigDict

from allocation.intent import Bandwidth, IpPackage, ServiceRequest, ServiceStatus

MAIN = "main"


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
