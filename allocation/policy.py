"""The rules of the Dedicated Internet product. Pure functions: no I/O, no randomness."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from ipaddress import IPv4Interface, IPv4Network
from typing import Literal, cast, get_args

from allocation.intent import IpPackage
from allocation.model import Port
from allocation.model import Role as Role  # re-exported: callers name it policy.Role

PREFIX_LENGTH: Mapping[IpPackage, int] = {
    IpPackage.SMALL: 29,
    IpPackage.MEDIUM: 28,
    IpPackage.LARGE: 27,
}
CORE_SWITCH_INDEXES = (1, 2)
CUSTOMER_ROLE = "customer"

VLAN_POOL = "Customer vlan pool"
PREFIX_POOL = "Customer prefixes pool"
DEFAULT_L2DOMAIN = "default"

TransitionName = Literal["deliver", "modify", "decommission"]


def prefix_length(package: IpPackage) -> int:
    return int(PREFIX_LENGTH[package])


def usable_hosts(length: int) -> int:
    return int(2 ** (32 - length)) - 2


def gateway_address(prefix: IPv4Network) -> IPv4Interface:
    """The gateway is the first usable host of the customer prefix."""
    return IPv4Interface(f"{next(prefix.hosts())}/{prefix.prefixlen}")


def vlan_name(service_identifier: str) -> str:
    return f"vlan__{service_identifier}"


def gateway_interface_name(vlan_id: int) -> str:
    return f"Vlan{vlan_id}"


def allocation_key(service_identifier: str, role: Role, detail: str | int | None = None) -> str:
    """The identity of one allocation. A prefix key carries its length, so that a package change
    allocates a new prefix instead of finding the old reservation."""
    key = f"{service_identifier}/{role}"
    return f"{key}/{detail}" if detail is not None else key


def branch_name(service_identifier: str, transition: TransitionName, attempt: int = 1) -> str:
    """dia-0042-deliver; a retry after a rejection works on dia-0042-deliver-2, and so on."""
    base = f"{service_identifier.lower()}-{transition}"
    return base if attempt == 1 else f"{base}-{attempt}"


_BRANCH = re.compile(r"^([a-z][a-z0-9]{1,9}-[0-9]{1,8})-(deliver|modify|decommission)(?:-([0-9]+))?$")


def parse_branch(branch: str) -> tuple[str, TransitionName, int] | None:
    """(service identifier, transition, attempt) of a review branch; None for any other branch."""
    found = _BRANCH.fullmatch(branch)
    if found is None:
        return None
    identifier, transition, attempt = found.groups()
    return identifier.upper(), cast(TransitionName, transition), int(attempt or 1)


def attempt_of(branch: str, service_identifier: str, transition: TransitionName) -> int:
    """The attempt number a branch name carries (the inverse of branch_name)."""
    base = branch_name(service_identifier, transition)
    return 1 if branch == base else int(branch.removeprefix(base + "-"))


def is_service_branch(service_identifier: str, branch: str) -> bool:
    """Whether ``branch`` is one of the service's transition branches (any attempt)."""
    transitions = "|".join(get_args(TransitionName))
    return (
        re.fullmatch(rf"{re.escape(branch_prefix(service_identifier))}({transitions})(-[0-9]+)?", branch)
        is not None
    )


def branch_prefix(service_identifier: str) -> str:
    """What every branch of the service starts with."""
    return f"{service_identifier.lower()}-"


def site_pools(site: str, pool_names: Collection[str], l2domains: Collection[str]) -> tuple[str, str, str]:
    """(vlan pool, prefix pool, l2 domain) of a site: a pool named for the site wins over the global one,
    which lets a catalog outgrow one /24 and one VLAN range without touching the core."""
    vlan_pool = f"{VLAN_POOL} {site}" if f"{VLAN_POOL} {site}" in pool_names else VLAN_POOL
    prefix_pool = f"{PREFIX_POOL} {site}" if f"{PREFIX_POOL} {site}" in pool_names else PREFIX_POOL
    l2domain = site if site in l2domains and vlan_pool != VLAN_POOL else DEFAULT_L2DOMAIN
    return vlan_pool, prefix_pool, l2domain


def natural_key(name: str) -> tuple[object, ...]:
    """Ethernet9 before Ethernet10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def choose_port(candidates: Iterable[Port], load: Mapping[int, int], bandwidth_mbps: int) -> Port | None:
    """Pick the customer port for a new service.

    Switches are balanced: the core switch (index 1 or 2) carrying fewer services goes first, index
    breaking ties. On that switch the slowest port that still carries the bandwidth wins (a 100M
    customer does not burn a 10G port), then the lowest port by natural name order. If the balanced
    switch has no suitable port, the other one is used.
    """
    eligible = [
        p for p in candidates if p.device_index in CORE_SWITCH_INDEXES and p.speed_mbps >= bandwidth_mbps
    ]
    if not eligible:
        return None
    switch = min({p.device_index for p in eligible}, key=lambda index: (load.get(index, 0), index))
    return min(
        (p for p in eligible if p.device_index == switch), key=lambda p: (p.speed_mbps, natural_key(p.name))
    )
