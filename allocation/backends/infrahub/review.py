"""The review of a proposed change on Infrahub: from the result of ``review.gql`` to ``checks.judge``.

Used by the check Infrahub runs in a proposed change's pipeline (``checks/service_review.py``, which
runs the query by its name in ``.infrahub.yml``) and by ``InfrahubInventory`` before it asks Infrahub
to merge (which sends the same text). Pure: the callers run the query twice, on the branch and on
main as it was when the branch was created (Infrahub branches are isolated: main's later changes are
not the branch's), and hand both results here.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from allocation import checks, policy, review
from allocation.backends.infrahub.mapping import nodes, peers, to_device, to_service, value
from allocation.model import Service, Site

QUERY_NAME = "service_review"
QUERY_FILE = Path(__file__).parent / "review.gql"


def query_text() -> str:
    return QUERY_FILE.read_text()


def branched_from(data: dict[str, Any]) -> str | None:
    """When the branch the query ran for was created (or last rebased): the base to compare with."""
    found = data.get("Branch") or []
    return str(found[0]["branched_from"]) if found and found[0].get("branched_from") else None


@dataclass(frozen=True)
class Review:
    change_id: str | None
    description: str
    touched: dict[str, Service | None]
    violations: list[checks.Violation]


def judge(on_branch: dict[str, Any], base: dict[str, Any]) -> Review:
    """What keeps the branch's proposed change from merging (see ``allocation.checks.judge``)."""
    branch_services = services(on_branch)
    base_services = services(base)
    change = _change(on_branch)
    description = str(value(change, "description") or "") if change else ""
    touched: dict[str, Service | None] = {
        sid: service
        for sid, service in branch_services.items()
        if review.state_of(service) != _state(base_services.get(sid))
    }
    recorded = review.parse(description)
    for sid in recorded.states if recorded is not None else {}:
        touched.setdefault(sid, branch_services.get(sid))
    facts = facts_of(on_branch).holding(branch_services.values())
    return Review(
        change_id=str(change["id"]) if change else None,
        description=description,
        touched=touched,
        violations=checks.judge(description, touched, facts),
    )


def services(data: dict[str, Any]) -> dict[str, Service]:
    """Every service of a review.gql result that reads as one. A service created on main after the
    branch shows on the branch without its branch-aware attributes: it is not the branch's, skipped."""
    found: dict[str, Service] = {}
    for node in nodes(data, "ServiceDedicatedInternet"):
        try:
            service = to_service(node)
        except (ValueError, TypeError, KeyError):
            continue
        found[service.service_identifier] = service
    return found


def facts_of(data: dict[str, Any]) -> checks.Facts:
    pool_names = {str(value(p, "name")) for p in nodes(data, "CoreNumberPool")}
    prefix_pools = {
        str(value(p, "name")): tuple(IPv4Network(str(value(r, "prefix"))) for r in peers(p, "resources"))
        for p in nodes(data, "CoreIPPrefixPool")
    }
    l2domains = {str(value(d, "name")) for d in nodes(data, "IpamL2Domain")}
    sites: dict[str, Site] = {}
    for site in nodes(data, "LocationSite"):
        shortname = str(value(site, "shortname"))
        vlan_pool, prefix_pool, l2domain = policy.site_pools(
            shortname, pool_names | set(prefix_pools), l2domains
        )
        sites[shortname] = Site(
            shortname=shortname,
            name=str(value(site, "name")),
            devices=tuple(to_device(d) for d in peers(site, "devices")),
            vlan_pool=vlan_pool,
            prefix_pool=prefix_pool,
            l2domain=l2domain,
        )
    holders: dict[str, frozenset[str]] = {}
    for reservation in nodes(data, "ServiceReservation"):
        resource = str(value(reservation, "resource"))
        if resource.startswith("port:"):
            holders[resource.removeprefix("port:")] = frozenset(
                {str(value(reservation, "service_identifier"))}
            )
    return checks.Facts(sites=sites, pools=prefix_pools, port_holders=holders)


def _change(data: dict[str, Any]) -> dict[str, Any] | None:
    """The branch's open proposed change (the newest one if several), else its newest one."""
    found = nodes(data, "CoreProposedChange")
    open_ = [c for c in found if value(c, "state") in ("open", "merging")]
    return max(open_ or found, key=lambda c: str(c["id"])) if found else None


def _state(service: Service | None) -> review.State | None:
    return review.state_of(service) if service is not None else None
