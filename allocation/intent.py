"""What a customer asks for: the typed intent at the edge of the core."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# DIA-0042, BIZ-7, ACME2-000123: a product prefix, a dash, a number. Upper case only, so that
# the branch name derived from it (lower-cased) maps back to exactly one service.
SERVICE_IDENTIFIER_PATTERN = r"^[A-Z][A-Z0-9]{1,9}-[0-9]{1,8}$"
SITE_PATTERN = r"^[a-z][a-z0-9-]{1,31}$"


class Bandwidth(StrEnum):
    """Ordered bandwidth in Mbit/s, as the product catalog sells it."""

    M100 = "100"
    G1 = "1000"
    G10 = "10000"

    @property
    def mbps(self) -> int:
        return int(self.value)


class IpPackage(StrEnum):
    """T-shirt sizes of public addressing."""

    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


class ServiceStatus(StrEnum):
    DRAFT = "draft"
    IN_DELIVERY = "in-delivery"
    ACTIVE = "active"
    IN_DECOMMISSIONING = "in-decommissioning"
    DECOMMISSIONED = "decommissioned"

    @classmethod
    def parse(cls, value: str) -> ServiceStatus:
        """Read a status, accepting the seed's historical spellings (never written back)."""
        return cls(_STATUS_ALIASES.get(value, value))


_STATUS_ALIASES = {
    "in-decomissioning": ServiceStatus.IN_DECOMMISSIONING.value,
    "decomissioned": ServiceStatus.DECOMMISSIONED.value,
}


class ServiceRequest(BaseModel):
    """A request for a Dedicated Internet service, as service delivery fills it in."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)

    service_identifier: str = Field(
        pattern=SERVICE_IDENTIFIER_PATTERN,
        description="Unique service identifier, e.g. DIA-0042",
        examples=["DIA-0042"],
    )
    account_reference: str = Field(min_length=1, max_length=64, description="Customer account, e.g. ACC-1234")
    site: str = Field(pattern=SITE_PATTERN, description="Site short name, e.g. par01")
    bandwidth: Bandwidth = Field(description="Ordered bandwidth in Mbit/s")
    ip_package: IpPackage = Field(description="small: 6 usable IPs, medium: 14, large: 30")

    @field_validator("service_identifier", mode="before")
    @classmethod
    def _upper_identifier(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("site", mode="before")
    @classmethod
    def _lower_site(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


def is_valid_identifier(value: str) -> bool:
    return re.fullmatch(SERVICE_IDENTIFIER_PATTERN, value) is not None


# What to tell a person instead of pydantic's terse messages, per field of a request.
_FIELD_HINTS = {
    "service_identifier": "must look like DIA-0042: an upper-case product prefix, a dash, digits",
    "account_reference": "give the customer account (1 to 64 characters), e.g. ACC-1234",
    "site": "give a site short name such as par01 (lower-case letters, digits, dashes)",
    "bandwidth": "choose 100 (100M), 1000 (1G) or 10000 (10G)",
    "ip_package": "choose small, medium or large",
}


def field_messages(error: ValidationError) -> dict[str, str]:
    """One readable message per field of a refused request ("" for the request as a whole)."""
    messages: dict[str, str] = {}
    for e in error.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        messages.setdefault(field, _FIELD_HINTS.get(field, e["msg"]))
    return messages
