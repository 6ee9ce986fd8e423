"""What a transition ends with, and what service delivery hands to the customer.

Shared by every way of running a transition (the plain runner, the Prefect flows, the portal), so
the same run reports the same result whoever ran it.
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Address

from pydantic import BaseModel, ConfigDict, Field

from allocation.intent import IpPackage, ServiceStatus
from allocation.model import Service


class Outcome(StrEnum):
    DONE = "done"  # the service reached the transition's target state on main (or was there already)
    REJECTED = "rejected"  # the proposed change was closed: compensated, back where it started
    WAITING = "waiting"  # the proposed change is still open; reconciliation finishes it later


class Handover(BaseModel):
    """What service delivery hands to the customer."""

    model_config = ConfigDict(frozen=True)

    site: str
    bandwidth_mbps: int
    ip_package: IpPackage
    vlan_id: int
    prefix: str
    gateway: IPv4Address
    first_customer_address: IPv4Address
    last_customer_address: IPv4Address
    customer_addresses: int
    port: str

    @classmethod
    def of(cls, service: Service) -> Handover | None:
        impl = service.implementation
        if impl.vlan is None or impl.prefix is None or impl.port is None or impl.gateway is None:
            return None
        customer = [h for h in impl.prefix.hosts() if h != impl.gateway.address.ip]
        port = impl.port.port
        return cls(
            site=service.site,
            bandwidth_mbps=service.bandwidth.mbps,
            ip_package=service.ip_package,
            vlan_id=impl.vlan.vlan_id,
            prefix=str(impl.prefix),
            gateway=impl.gateway.address.ip,
            first_customer_address=customer[0],
            last_customer_address=customer[-1],
            customer_addresses=len(customer),
            port=f"{port.device} {port.name} ({port.speed_mbps} Mbit/s)",
        )


class TransitionResult(BaseModel):
    """How a run of a transition ended, whatever the architect decided."""

    model_config = ConfigDict(frozen=True)

    service_identifier: str
    transition: str
    outcome: Outcome
    status: ServiceStatus = Field(description="The service's status on main when the run ended")
    branch: str | None = None
    proposed_change: str | None = Field(default=None, description="Id of the proposed change")
    message: str
    resources: Handover | None = Field(default=None, description="What the customer gets (when active)")
