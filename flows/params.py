"""Flow parameters and results: pydantic models, so the Prefect UI renders them as forms."""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Address

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from allocation.intent import SERVICE_IDENTIFIER_PATTERN, Bandwidth, IpPackage, ServiceStatus
from allocation.model import Service


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, str_strip_whitespace=True, extra="forbid")


class ServiceRef(_Params):
    """Which service a transition acts on."""

    service_identifier: str = Field(
        pattern=SERVICE_IDENTIFIER_PATTERN, description="e.g. DIA-0042", examples=["DIA-0042"]
    )

    @field_validator("service_identifier", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


class Review(_Params):
    """How a flow run waits for the architect to merge or close its proposed change."""

    timeout_seconds: float = Field(
        default=3600, ge=0, description="Local runs: stop polling after this; reconciliation finishes later"
    )
    poll_seconds: float = Field(default=0.2, gt=0, description="First poll interval (local runs)")
    max_poll_seconds: float = Field(default=30, gt=0, description="Poll interval ceiling (local runs)")
    suspend_timeout_seconds: int = Field(
        default=14 * 24 * 3600, ge=60, description="Deployed runs: how long a suspended run can be resumed"
    )


class DeliverParams(ServiceRef):
    review: Review = Review()


class DecommissionParams(ServiceRef):
    review: Review = Review()


class ModifyParams(ServiceRef):
    bandwidth: Bandwidth | None = Field(default=None, description="New bandwidth in Mbit/s")
    ip_package: IpPackage | None = Field(default=None, description="New IP package")
    review: Review = Review()

    @model_validator(mode="after")
    def _something_changes(self) -> ModifyParams:
        if self.bandwidth is None and self.ip_package is None:
            raise ValueError("a modification needs a new bandwidth, a new ip_package, or both")
        return self


class ReconcileParams(_Params):
    resume_suspended: bool = Field(
        default=True, description="Resume suspended flow runs whose proposed change is no longer open"
    )
    branch: str | None = Field(
        default=None,
        description="Conclude and resume only the service of this branch (a reviewed proposed change's)",
    )


class Outcome(StrEnum):
    DONE = "done"  # the service reached the transition's target state on main
    REJECTED = "rejected"  # the proposed change was closed: compensated, back where it started
    WAITING = "waiting"  # the proposed change is still open; reconciliation will finish it


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
        hosts = list(impl.prefix.hosts())
        customer = [h for h in hosts if h != impl.gateway.address.ip]
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
    """What a lifecycle flow run ends with, whatever the architect decided."""

    model_config = ConfigDict(frozen=True)

    service_identifier: str
    transition: str
    outcome: Outcome
    status: ServiceStatus = Field(description="The service's status on main when the flow ended")
    branch: str | None = None
    proposed_change: str | None = Field(default=None, description="Id of the proposed change")
    message: str
    resources: Handover | None = Field(default=None, description="What the customer gets (when active)")


class ReconcileReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    concluded: dict[str, str] = Field(default_factory=dict, description="service -> outcome")
    waiting: list[str] = Field(default_factory=list, description="services whose change is still open")
    stalled: list[str] = Field(
        default_factory=list, description="services in a transition with no proposed change yet"
    )
    resumed_flow_runs: list[str] = Field(default_factory=list)
    leaks: list[str] | None = Field(default=None, description="None when the backend cannot tell")
