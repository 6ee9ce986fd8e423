"""The checks that block a bad merge: an implementation against its intent, and a branch against the
plan its proposed change was opened for. Pure functions, no I/O.

``validate`` holds the product's rules; ``judge`` applies them to every service a branch touches and
binds the branch to its reviewed plan (``allocation/review.py``). The same ``judge`` runs in three
places, with the same messages: Infrahub's proposed-change pipeline (``checks/service_review.py``),
the Infrahub backend before it asks Infrahub to merge, and the embedded backend's merge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network

from pydantic import BaseModel, ConfigDict

from allocation import policy, review
from allocation.errors import ChangeRefused
from allocation.intent import ServiceStatus
from allocation.model import Service, Site


class Violation(BaseModel):
    model_config = ConfigDict(frozen=True)

    service: str
    rule: str  # a short name: port-site, port-speed, prefix-length, ...
    message: str  # a sentence that starts with the service identifier

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Facts:
    """What the rules need besides the service itself."""

    sites: Mapping[str, Site]
    pools: Mapping[str, tuple[IPv4Network, ...]]  # prefix pool name -> the prefixes it allocates from
    # port id (device:name) -> the services holding it: its reservation (or claim) and the services
    # that have it on the branch
    port_holders: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def holding(self, services: Iterable[Service]) -> Facts:
        """These facts with the ports of ``services`` added to their holders."""
        holders = {port: set(names) for port, names in self.port_holders.items()}
        for service in services:
            if service.implementation.port is not None:
                holders.setdefault(service.implementation.port.port.id, set()).add(service.service_identifier)
        return Facts(self.sites, self.pools, {p: frozenset(s) for p, s in holders.items()})


def validate(service: Service, facts: Facts) -> list[Violation]:
    """Every rule of the Dedicated Internet product the service, as it is on a branch, breaks."""
    sid = service.service_identifier
    impl = service.implementation
    found: list[Violation] = []

    def broken(rule: str, message: str) -> None:
        found.append(Violation(service=sid, rule=rule, message=f"{sid}{message}"))

    held = [name for name, part in _parts(service) if part is not None]
    if service.status is ServiceStatus.DECOMMISSIONED and held:
        broken("decommissioned-holds", f" is decommissioned but still holds its {_words(held)}")
    if service.status is ServiceStatus.ACTIVE and not impl.complete:
        missing = [name for name, part in _parts(service) if part is None]
        broken("complete", f" is active without a {_words(missing)}")

    site = facts.sites.get(service.site)
    if site is None:
        broken("site", f": its site {service.site} is not in the inventory")
        return found

    port = impl.port.port if impl.port else None
    if port is not None:
        switches = {d.name for d in site.devices if d.role == "core"}
        if port.device not in switches:
            broken(
                "port-site",
                f": port {port.device} {port.name} is not on a core switch of {site.shortname} "
                f"({', '.join(sorted(switches)) or 'none'})",
            )
        if port.speed_mbps < service.bandwidth.mbps:
            broken(
                "port-speed",
                f": port {port.device} {port.name} runs at {port.speed_mbps} Mbit/s, "
                f"slower than the {service.bandwidth.mbps} Mbit/s ordered",
            )
        others = sorted(facts.port_holders.get(port.id, frozenset()) - {sid})
        if others:
            broken("port-shared", f": port {port.device} {port.name} is also held by {', '.join(others)}")

    prefix = impl.prefix
    if prefix is not None:
        expected = policy.prefix_length(service.ip_package)
        if prefix.prefixlen != expected:
            broken(
                "prefix-length",
                f": prefix {prefix} is a /{prefix.prefixlen}; the {service.ip_package.value} package "
                f"gets a /{expected}",
            )
        pool = facts.pools.get(site.prefix_pool, ())
        if not any(prefix.subnet_of(resource) for resource in pool):
            broken(
                "prefix-pool",
                f": prefix {prefix} is not inside the pool {site.prefix_pool!r} "
                f"({', '.join(str(r) for r in pool) or 'no prefixes'})",
            )

    gateway = impl.gateway
    if gateway is not None:
        if prefix is not None and gateway.address != policy.gateway_address(prefix):
            broken(
                "gateway-address",
                f": gateway {gateway.address} is not the first usable host of {prefix} "
                f"({policy.gateway_address(prefix)})",
            )
        if port is not None:
            router = site.device("edge", port.device_index)
            expected_router = router.name if router is not None else f"edge router {port.device_index}"
            if gateway.device != expected_router:
                broken(
                    "gateway-router",
                    f": gateway on {gateway.device}, but port {port.device} {port.name} pairs with "
                    f"{expected_router}",
                )

    on: list[tuple[str, int]] = []
    if impl.vlan is not None:
        on.append((f"its VLAN {impl.vlan.vlan_id}", impl.vlan.vlan_id))
    if impl.port is not None:
        on.append((f"access VLAN {impl.port.vlan_id} on the port", impl.port.vlan_id))
    if gateway is not None:
        on.append((f"gateway interface {gateway.interface} on VLAN {gateway.vlan_id}", gateway.vlan_id))
    named_after = gateway is None or gateway.interface == policy.gateway_interface_name(gateway.vlan_id)
    if len({number for _, number in on}) > 1 or not named_after:
        broken("one-vlan", f": port and gateway are not on one VLAN ({', '.join(label for label, _ in on)})")
    return found


def judge(description: str, touched: Mapping[str, Service | None], facts: Facts) -> list[Violation]:
    """Everything that keeps a proposed change from merging.

    ``touched`` holds the services the branch changes and those its recorded plan names, each as it
    is on the branch (None: gone). Every one of them must keep the rules; when the description
    records a plan, every one of them must be exactly as reviewed."""
    found: list[Violation] = []
    recorded = review.parse(description)
    if recorded is not None and not recorded.intact:
        found.append(
            Violation(
                service="-",
                rule="plan-digest",
                message=f"the plan recorded in the proposed change does not match its digest "
                f"{review.short(recorded.digest)} (edited by hand): run the transition again to re-open it",
            )
        )
    for sid in sorted(touched):
        service = touched[sid]
        if service is not None:
            found += validate(service, facts)
        if recorded is None or not recorded.intact:
            continue
        changed = review.differences(recorded.states.get(sid), service)
        if changed:
            now = review.short(review.digest({sid: review.state_of(service)})) if service else "-"
            found.append(
                Violation(
                    service=sid,
                    rule="reviewed-plan",
                    message=f"{sid} is not as reviewed (plan {review.short(recorded.digest)}, "
                    f"branch now {now}): {'; '.join(changed)}; run its transition again to re-open "
                    f"the change with a fresh plan",
                )
            )
    return found


def refusal(change_id: str, branch: str, violations: list[str]) -> ChangeRefused:
    """The error a refused merge raises, on either backend."""
    return ChangeRefused(
        f"proposed change {change_id} ({branch}) cannot be merged, {len(violations)} check(s) failed: "
        + "; ".join(violations),
        violations,
    )


def _parts(service: Service) -> list[tuple[str, object]]:
    impl = service.implementation
    return [("VLAN", impl.vlan), ("prefix", impl.prefix), ("port", impl.port), ("gateway", impl.gateway)]


def _words(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
