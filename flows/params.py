"""Flow parameters: pydantic models, so the Prefect UI renders them as forms and refuses bad input
before a run starts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from allocation.intent import SERVICE_IDENTIFIER_PATTERN, Bandwidth, IpPackage


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, str_strip_whitespace=True, extra="forbid")


class ServiceRef(_Params):
    """Which service a transition acts on."""

    service_identifier: str = Field(
        pattern=SERVICE_IDENTIFIER_PATTERN,
        title="Service identifier",
        description="The service's identifier as recorded by its request, e.g. DIA-0042",
        examples=["DIA-0042"],
    )

    @field_validator("service_identifier", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


class DeliverParams(ServiceRef):
    """Deliver a recorded (draft) service."""


class DecommissionParams(ServiceRef):
    """Retire an active service; its resources return to their pools with the merge."""


class ModifyParams(ServiceRef):
    """A new bandwidth and/or IP package for an active service."""

    bandwidth: Bandwidth | None = Field(default=None, description="New bandwidth in Mbit/s")
    ip_package: IpPackage | None = Field(default=None, description="New IP package")

    @model_validator(mode="after")
    def _something_changes(self) -> ModifyParams:
        if self.bandwidth is None and self.ip_package is None:
            raise ValueError("a modification needs a new bandwidth, a new ip_package, or both")
        return self


class LocalWait(_Params):
    """How long a run *without a deployment* (CLI, tests) polls for the architect's decision.
    Deployed runs suspend instead and never use this; deployments leave it out of their form."""

    seconds: float = Field(default=0, ge=0, le=7 * 24 * 3600)


class ReconcileParams(_Params):
    branch: str | None = Field(
        default=None,
        description="Only the service of this review branch (what an Infrahub event names); all when empty",
    )
    resume_suspended: bool = Field(
        default=True, description="Resume suspended flow runs whose proposed change is no longer open"
    )
