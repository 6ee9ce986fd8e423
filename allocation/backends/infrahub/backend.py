"""The inventory port on a live Infrahub (tested on 1.11.9; written for 1.4+), through infrahub-sdk.

How each promise of the port (``allocation.inventory``) maps onto Infrahub:

- Services are ``ServiceDedicatedInternet`` nodes: branch-agnostic identity (identifier, account,
  site), branch-aware status, bandwidth and package. Created on main.
- VLAN IDs come from a ``CoreNumberPool`` (``from_pool`` in the VLAN's create, on the branch);
  prefixes from a ``CoreIPPrefixPool`` (``InfrahubIPPrefixPoolGetResource`` with the allocation
  key as identifier, on the branch). Both pools allocate across every branch.
- Ports and prefixes held by a service are also recorded as ``ServiceReservation`` nodes
  (branch-agnostic, unique ``resource``), created on main, where Infrahub serialises creates of a
  kind with a uniqueness constraint: of two concurrent claims of one port exactly one succeeds,
  the other gets a uniqueness violation, which is ``PortTaken``. A reservation records the branch
  that made it (``claimed_on``) and the branch whose merge gives it back (``released_on``).

Where Infrahub differs, and what this backend does about it:

- Both pools count a resource as used when *any* branch holds it, and a branch's own copy wins
  over main's: a VLAN deleted on a branch frees its number at once for everybody (the next
  allocation then collides with main's VLAN on ``[l2domain, vlan_id]``), and a VLAN or prefix a
  merged branch created stays taken while that branch exists, even after main deletes it. So:
  a VLAN that main holds is released on a branch by setting its status to ``deprecated`` (the
  proposed change shows it) and deleted from main after the merge; and a merged branch is
  deleted once its merge is finished (its proposed changes stay, merged, for the record).
- Infrahub reports a prefix pool's utilisation for one branch's view only, so prefix pool usage
  is summed from the prefix reservations; VLAN pools use Infrahub's own (global) utilisation,
  one request per pool (two utilisation fields in one request break Infrahub's DB session).
- What a merge leaves to do (reservations claimed or released on the branch, deferred VLAN
  deletions, deleting the branch) is done by ``_finish_merge``: run by ``merge_proposed_change``
  and, for a change merged in Infrahub's UI, the first time ``get_proposed_change`` sees it
  merged (``lifecycle.conclude`` always asks). It is idempotent.
- ``discard_changes`` cannot undo a deletion on a branch (Infrahub has no per-node revert): it
  deletes what the branch created and writes main's values back onto what the branch changed.
- ``pool_has_room`` for a prefix pool compares free addresses with the prefix size; it does not
  see fragmentation (``ensure_prefix`` still raises ``PoolExhausted`` when Infrahub finds none).
- Merging runs as an Infrahub task (tens of seconds), which Infrahub refuses while a check of the
  change's pipeline failed (or does not know of a check still to come): the backend judges the
  branch itself first (the same check, ``review``), waits for the pipeline, refuses with the failed
  checks' messages, and only then submits the merge and polls its state.
- A branch created before a schema change keeps the old schema: load schemas before creating
  review branches (``scripts/infrahub-bootstrap``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Interface, IPv4Network
from typing import Any

from infrahub_sdk.exceptions import GraphQLError

from allocation import checks, policy
from allocation.backends.infrahub import mutations as m
from allocation.backends.infrahub import queries as q
from allocation.backends.infrahub import review
from allocation.backends.infrahub.client import Connection, messages
from allocation.backends.infrahub.mapping import (
    RELEASED_VLAN_STATUS,
    held_vlan,
    interfaces,
    nodes,
    peer,
    peers,
    port_key,
    to_change,
    to_implementation,
    to_service,
    value,
)
from allocation.errors import (
    InventoryUnavailable,
    PermissionDenied,
    PoolExhausted,
    PortTaken,
    ServiceConflict,
    UnknownService,
    UnknownSite,
)
from allocation.intent import Bandwidth, IpPackage, ServiceRequest, ServiceStatus
from allocation.model import (
    MAIN,
    ChangeState,
    Device,
    Gateway,
    PoolUsage,
    Port,
    PortAssignment,
    PortUsage,
    ProposedChange,
    Service,
    Site,
    Vlan,
)

SERVICE = q.SERVICE_KIND
LOST_VALIDATOR_SECONDS = 600.0
RESERVATION = q.RESERVATION_KIND
PAGE = 1000


@dataclass(frozen=True)
class _SiteInfo:
    name: str
    devices: tuple[Device, ...]


@dataclass
class _Catalog:
    """What does not change while an inventory is open: sites and devices, pools, L2 domains."""

    sites: dict[str, _SiteInfo] = field(default_factory=dict)
    number_pools: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (id, size)
    prefix_pools: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (id, addresses)
    l2domains: dict[str, str] = field(default_factory=dict)  # name -> id

    def pool(self, name: str) -> tuple[str, int]:
        found = self.number_pools.get(name) or self.prefix_pools.get(name)
        if found is None:
            raise PoolExhausted(name, "pool of that name in Infrahub")
        return found


class InfrahubInventory:
    """The inventory port on Infrahub. One instance per event loop; ``close()`` it after use."""

    def __init__(
        self,
        address: str,
        token: str | None = None,
        *,
        timeout: int = 60,
        merge_timeout: float = 900.0,
        access_token: str | None = None,
    ) -> None:
        self._conn = Connection(address, token, timeout, access_token=access_token)
        self._catalog: _Catalog | None = None
        self._finished: set[str] = set()
        self.merge_timeout = merge_timeout

    @classmethod
    def from_settings(cls, settings: Any, *, access_token: str | None = None) -> InfrahubInventory:
        """Build from ``allocation.settings.InfrahubSettings`` (duck-typed: no pydantic-settings here);
        with ``access_token`` (a person's JWT), as that person instead of the API token's account."""
        token = settings.api_token.get_secret_value() if settings.api_token is not None else None
        return cls(str(settings.address), token, timeout=int(settings.timeout), access_token=access_token)

    @property
    def address(self) -> str:
        return self._conn.address

    @property
    def round_trips(self) -> int:
        """HTTP requests sent to Infrahub so far (each GraphQL document is one)."""
        return self._conn.round_trips

    async def close(self) -> None:
        await self._conn.close()

    # ------------------------------------------------------------------ plumbing
    async def _gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        branch: str = MAIN,
        at: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (passed to the SDK, which owns the request)
    ) -> dict[str, Any]:
        try:
            return await self._conn.gql(query, variables, branch, at, timeout=timeout)
        except (InventoryUnavailable, GraphQLError) as exc:
            text = (messages(exc) if isinstance(exc, GraphQLError) else str(exc)).lower()
            if branch != MAIN and ("branch" in text or "404" in text) and "not found" in text:
                raise ServiceConflict(f"no branch {branch!r} in Infrahub") from exc
            raise

    async def _write(self, ops: list[m.Op], branch: str) -> None:
        if ops:
            text, variables = m.document(ops)
            await self._gql(text, variables, branch)

    async def _catalog_data(self, refresh: bool = False) -> _Catalog:
        if self._catalog is not None and not refresh:
            return self._catalog
        data = await self._gql(q.CATALOG)
        catalog = _Catalog()
        for site in nodes(data, "LocationSite"):
            devices = tuple(
                sorted(
                    (
                        Device(
                            name=str(value(d, "name")),
                            role=str(value(d, "role")),
                            index=int(value(d, "index")) if value(d, "index") is not None else None,
                        )
                        for d in peers(site, "devices")
                    ),
                    key=lambda d: d.name,
                )
            )
            catalog.sites[str(value(site, "shortname"))] = _SiteInfo(str(value(site, "name")), devices)
        for pool in nodes(data, "CoreNumberPool"):
            size = int(value(pool, "end_range")) - int(value(pool, "start_range")) + 1
            catalog.number_pools[str(value(pool, "name"))] = (str(pool["id"]), size)
        for pool in nodes(data, "CoreIPPrefixPool"):
            size = sum(IPv4Network(value(r, "prefix")).num_addresses for r in peers(pool, "resources"))
            catalog.prefix_pools[str(value(pool, "name"))] = (str(pool["id"]), size)
        for domain in nodes(data, "IpamL2Domain"):
            catalog.l2domains[str(value(domain, "name"))] = str(domain["id"])
        self._catalog = catalog
        return catalog

    async def _read(self, identifier: str, branch: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The service on ``branch`` with its implementation, and its reservations (one request)."""
        data = await self._gql(q.SERVICE, {"identifier": identifier}, branch)
        found = nodes(data, SERVICE)
        return (found[0] if found else None), nodes(data, RESERVATION)

    async def _require(self, identifier: str, branch: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        node, reservations = await self._read(identifier, branch)
        if node is None:
            raise UnknownService(identifier)
        return node, reservations

    # ------------------------------------------------------------------ services
    async def get_service(self, identifier: str, branch: str) -> Service | None:
        node, _ = await self._read(identifier, branch)
        return to_service(node) if node else None

    async def list_services(
        self,
        branch: str,
        *,
        status: ServiceStatus | None = None,
        site: str | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Service]:
        # Infrahub orders by the schema's order_by (the identifier) and ignores null filters.
        filters = {"status": status.value if status else None, "site": site}
        found: list[Service] = []
        offset = max(offset, 0)
        while limit is None or len(found) < limit:
            size = PAGE if limit is None else min(PAGE, limit - len(found))
            data = await self._gql(q.SERVICES, {"limit": size, "offset": offset, **filters}, branch)
            page = nodes(data, SERVICE)
            found += [to_service(n) for n in page]
            offset += size
            if len(page) < size or offset >= int(data[SERVICE].get("count") or 0):
                break
        return sorted(found, key=lambda s: s.service_identifier)

    async def count_services(
        self, branch: str, *, status: ServiceStatus | None = None, site: str | None = None
    ) -> int:
        variables = {"status": status.value if status else None, "site": site}
        data = await self._gql(q.SERVICE_COUNT, variables, branch)
        return int(data[SERVICE].get("count") or 0)

    async def create_service(self, request: ServiceRequest, *, requested_by: str | None = None) -> Service:
        data = {
            "service_identifier": m.attr(request.service_identifier),
            "account_reference": m.attr(request.account_reference),
            "status": m.attr(ServiceStatus.DRAFT.value),
            "bandwidth": m.attr(request.bandwidth.value),
            "ip_package": m.attr(request.ip_package.value),
            "location": m.hfid(request.site),
        }
        if requested_by is not None:
            data["requested_by"] = m.attr(requested_by)
        try:
            await self._gql(q.CREATE_SERVICE, {"data": data})
            return Service(
                service_identifier=request.service_identifier,
                account_reference=request.account_reference,
                site=request.site,
                bandwidth=request.bandwidth,
                ip_package=request.ip_package,
                status=ServiceStatus.DRAFT,
                requested_by=requested_by,
            )
        except GraphQLError as exc:
            existing = await self.get_service(request.service_identifier, MAIN)
            if existing is None:
                sites = (await self._catalog_data(refresh=True)).sites
                if request.site not in sites:
                    raise UnknownSite(request.site, list(sites)) from exc
                raise
        if (existing.account_reference, existing.site) != (request.account_reference, request.site):
            raise ServiceConflict(
                f"{request.service_identifier} already exists for account {existing.account_reference} "
                f"at {existing.site}"
            )
        return existing

    async def withdraw_service(self, identifier: str) -> None:
        node, records = await self._read(identifier, MAIN)
        if node is None:
            return
        status = ServiceStatus.parse(str(value(node, "status")))
        if status is not ServiceStatus.DRAFT:
            raise ServiceConflict(f"{identifier} is {status.value}: only a draft can be withdrawn")
        branch = policy.branch_name(identifier, "deliver")
        if await self._newest_change(branch) is not None:
            raise ServiceConflict(f"{identifier} has a proposed change: it is not withdrawn")
        try:
            await self._gql(q.DELETE_BRANCH, {"name": branch})
        except GraphQLError as exc:
            if "not found" not in messages(exc).lower():
                raise
        await self._write(
            [*(m.delete(RESERVATION, r["id"]) for r in records), m.delete(SERVICE, node["id"])], MAIN
        )

    async def update_service(
        self,
        identifier: str,
        branch: str,
        *,
        status: ServiceStatus | None = None,
        bandwidth: Bandwidth | None = None,
        ip_package: IpPackage | None = None,
    ) -> None:
        data: dict[str, Any] = {"hfid": [identifier]}
        for name, new in (("status", status), ("bandwidth", bandwidth), ("ip_package", ip_package)):
            if new is not None:
                data[name] = m.attr(new.value)
        if len(data) == 1:
            await self._require(identifier, branch)
            return
        try:
            await self._gql(q.UPDATE_SERVICE, {"data": data}, branch)
        except GraphQLError as exc:
            if "unable to find" in messages(exc).lower() or "not found" in messages(exc).lower():
                raise UnknownService(identifier) from exc
            raise

    # ------------------------------------------------------------------ topology
    async def list_sites(self) -> list[str]:
        return sorted((await self._catalog_data()).sites)

    async def get_site(self, shortname: str) -> Site:
        catalog = await self._catalog_data()
        if shortname not in catalog.sites:
            catalog = await self._catalog_data(refresh=True)
            if shortname not in catalog.sites:
                raise UnknownSite(shortname, list(catalog.sites))
        info = catalog.sites[shortname]
        pool_names = {*catalog.number_pools, *catalog.prefix_pools}
        vlan_pool, prefix_pool, l2domain = policy.site_pools(shortname, pool_names, catalog.l2domains)
        return Site(
            shortname=shortname,
            name=info.name,
            devices=info.devices,
            vlan_pool=vlan_pool,
            prefix_pool=prefix_pool,
            l2domain=l2domain,
        )

    async def _core_switches(self, site: str) -> dict[str, int]:
        catalog = await self._catalog_data()
        info = catalog.sites.get(site)
        if info is None:
            return {}
        return {d.name: d.index or 0 for d in info.devices if d.role == "core"}

    async def free_ports(self, site: str, min_speed_mbps: int) -> list[Port]:
        switches = await self._core_switches(site)
        if not switches:
            return []
        data = await self._gql(q.FREE_PORTS, {"devices": sorted(switches), "site": site})
        taken = {str(value(r, "resource")) for r in nodes(data, RESERVATION)}
        first: dict[tuple[str, int], Port] = {}
        for interface in nodes(data, "DcimInterfaceL2"):
            device = str(value(peer(interface, "device"), "name"))
            name = str(value(interface, "name"))
            speed = int(value(interface, "speed") or 0)
            if (
                speed < min_speed_mbps
                or _port_resource(port_key(device, name)) in taken
                or device not in switches
            ):
                continue
            port = Port(
                id=port_key(device, name),
                device=device,
                name=name,
                speed_mbps=speed,
                device_index=switches[device],
            )
            current = first.get((device, speed))
            if current is None or policy.natural_key(name) < policy.natural_key(current.name):
                first[(device, speed)] = port
        return sorted(first.values(), key=lambda p: (p.device, p.speed_mbps, policy.natural_key(p.name)))

    async def switch_load(self, site: str) -> dict[int, int]:
        data = await self._gql(q.SITE_RESERVATIONS, {"site": site})
        load: dict[int, int] = {}
        for reservation in nodes(data, RESERVATION):
            index = int(value(reservation, "device_index") or 0)
            load[index] = load.get(index, 0) + 1
        return load

    # ------------------------------------------------------------------ pools and usage
    async def _number_pool_used(self, pool_id: str, size: int) -> int:
        """Used VLAN IDs on every branch, from Infrahub's utilisation (a percentage).

        One request per pool: Infrahub resolves sibling root fields concurrently, and two
        ``InfrahubResourcePoolUtilization`` fields in one document share a database session and
        break it ("read() called while another coroutine is already waiting"), leaving the API
        server unusable until it restarts."""
        data = await self._gql(q.UTILIZATION, {"pool": pool_id})
        return round(float(data["InfrahubResourcePoolUtilization"]["utilization"] or 0.0) * size / 100)

    async def _prefix_pools_used(self) -> dict[str, int]:
        """Addresses held per prefix pool, from the prefix reservations (Infrahub reports a prefix
        pool's utilisation for one branch's view only)."""
        used: dict[str, int] = {}
        for record in await self._paged(q.RESERVATIONS_OF_KIND, RESERVATION, {"kind": "prefix"}):
            pool = str(value(record, "pool"))
            used[pool] = used.get(pool, 0) + int(value(record, "size") or 0)
        return used

    async def pool_has_room(self, pool: str, prefix_length: int | None = None) -> bool:
        catalog = await self._catalog_data()
        pool_id, size = catalog.pool(pool)
        if prefix_length is None:
            return await self._number_pool_used(pool_id, size) < size
        used = (await self._prefix_pools_used()).get(pool, 0)
        return size - used >= int(2 ** (32 - prefix_length))

    async def pool_usage(self) -> list[PoolUsage]:
        catalog = await self._catalog_data()
        found = [
            PoolUsage(name=name, kind="number", used=await self._number_pool_used(pool_id, size), total=size)
            for name, (pool_id, size) in catalog.number_pools.items()
        ]
        prefix_used = await self._prefix_pools_used()
        found += [
            PoolUsage(name=name, kind="prefix", used=prefix_used.get(name, 0), total=size)
            for name, (_, size) in catalog.prefix_pools.items()
        ]
        return sorted(found, key=lambda p: p.name)

    async def port_usage(self) -> list[PortUsage]:
        catalog = await self._catalog_data()
        site_of = {
            d.name: site for site, info in catalog.sites.items() for d in info.devices if d.role == "core"
        }
        ports = await self._paged(q.CUSTOMER_PORTS, "DcimInterfaceL2")
        records = await self._paged(q.RESERVATIONS_OF_KIND, RESERVATION, {"kind": "port"})
        taken = {str(value(r, "resource")) for r in records}
        counts: dict[tuple[str, str, int], list[int]] = {}
        for interface in ports:
            device = str(value(peer(interface, "device"), "name"))
            if device not in site_of:
                continue
            key = (site_of[device], device, int(value(interface, "speed") or 0))
            free_used = counts.setdefault(key, [0, 0])
            free_used[
                1 if _port_resource(port_key(device, str(value(interface, "name")))) in taken else 0
            ] += 1
        return [
            PortUsage(site=site, device=device, speed_mbps=speed, free=free, used=used)
            for (site, device, speed), (free, used) in sorted(counts.items())
        ]

    async def _paged(
        self, query: str, kind: str, variables: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            data = await self._gql(query, {**(variables or {}), "limit": PAGE, "offset": offset})
            page = nodes(data, kind)
            found += page
            offset += PAGE
            if len(page) < PAGE or offset >= int(data[kind].get("count") or 0):
                return found

    # ------------------------------------------------------------------ implementation objects
    async def ensure_vlan(self, service: str, *, pool: str, l2domain: str, branch: str) -> Vlan:
        node, _ = await self._require(service, branch)
        current = peer(node, "vlan")
        if current is not None:
            if value(current, "status") == RELEASED_VLAN_STATUS:  # its release is being taken back
                await self._write(
                    [m.update("IpamVLAN", {"id": current["id"], "status": m.attr("active")})], branch
                )
            vlan = to_implementation(
                {**node, "vlan": {"node": {**current, "status": {"value": "active"}}}}
            ).vlan
            assert vlan is not None
            return vlan
        catalog = await self._catalog_data()
        pool_id, _ = catalog.pool(pool)
        if l2domain not in catalog.l2domains:
            catalog = await self._catalog_data(refresh=True)
        data = {
            "name": m.attr(policy.vlan_name(service)),
            "vlan_id": {"from_pool": {"id": pool_id, "identifier": policy.allocation_key(service, "vlan")}},
            "l2domain": m.ref(catalog.l2domains[l2domain]),
            "role": m.attr(policy.CUSTOMER_ROLE),
            "status": m.attr("active"),
            "description": m.attr(f"Customer VLAN of {service}"),
            "service": m.ref(node["id"]),
        }
        try:
            created = (await self._gql(q.CREATE_VLAN, {"data": data}, branch))["IpamVLANCreate"]["object"]
        except GraphQLError as exc:
            if "exhausted" in messages(exc).lower():
                raise PoolExhausted(pool, "VLAN ID") from exc
            raise
        return Vlan(
            vlan_id=int(value(created, "vlan_id")), name=str(value(created, "name")), l2domain=l2domain
        )

    async def ensure_prefix(
        self, service: str, *, pool: str, length: int, vlan: Vlan, branch: str
    ) -> IPv4Network:
        node, records = await self._require(service, branch)
        current = peer(node, "prefix")
        if current is not None:
            prefix = IPv4Network(value(current, "prefix"))
            if prefix.prefixlen != length:
                raise ServiceConflict(f"{service} holds {prefix}; release it before asking for a /{length}")
            if not _record(records, _prefix_resource(prefix)):  # allocated, then interrupted
                await self._reserve(
                    service, _prefix_resource(prefix), "prefix", branch, pool=pool, size=prefix.num_addresses
                )
            return prefix
        pool_id, _ = (await self._catalog_data()).pool(pool)
        vlan_node = held_vlan(node)
        attributes: dict[str, Any] = {
            "role": m.attr(policy.CUSTOMER_ROLE),
            "status": m.attr("active"),
            "description": m.attr(f"Customer prefix of {service}"),
            "service": m.ref(node["id"]),
            "vlan": m.ref(vlan_node["id"]) if vlan_node else m.hfid(vlan.l2domain, vlan.vlan_id),
        }
        request = {
            "id": pool_id,
            "identifier": policy.allocation_key(service, "prefix", length),
            "prefix_length": length,
            "data": attributes,
        }
        try:
            result = await self._gql(q.ALLOCATE_PREFIX, {"data": request}, branch)
        except GraphQLError as exc:
            text = messages(exc).lower()
            if "no more resources" in text or "exhausted" in text:
                raise PoolExhausted(pool, f"/{length} prefix") from exc
            raise
        allocated = result["InfrahubIPPrefixPoolGetResource"]["node"]
        try:
            prefix = IPv4Network(str(allocated["display_label"]))
        except ValueError:
            prefix = IPv4Network(value(peer((await self._require(service, branch))[0], "prefix"), "prefix"))
        await self._reserve(
            service, _prefix_resource(prefix), "prefix", branch, pool=pool, size=prefix.num_addresses
        )
        return prefix

    async def claim_port(self, service: str, *, port: Port, vlan: Vlan, branch: str) -> PortAssignment:
        node, records = await self._require(service, branch)
        held = interfaces(node, "DcimInterfaceL2")
        current = _key(held[0]) if held else None
        if current is not None and current != port.id:
            raise ServiceConflict(f"{service} holds {current}; release it before moving")
        resource = _port_resource(port.id)
        record = _record(records, resource)
        if record is None or value(record, "released_on") == branch:
            site = str(value(peer(node, "location"), "shortname"))
            try:
                await self._reserve(
                    service, resource, "port", branch, site=site, device_index=port.device_index
                )
            except _Taken as exc:
                raise PortTaken(port.id) from exc
        assignment = PortAssignment(port=port, vlan_id=vlan.vlan_id)
        untagged = peer(held[0], "untagged_vlan") if held else None
        if untagged is not None and int(value(untagged, "vlan_id")) == vlan.vlan_id:
            return assignment
        vlan_node = held_vlan(node)
        device, name = port.id.split(":", 1)
        data = {
            **m.hfid(device, name),
            "enabled": m.attr(True),
            "status": m.attr("active"),
            "l2_mode": m.attr("Access"),
            "untagged_vlan": m.ref(vlan_node["id"]) if vlan_node else m.hfid(vlan.l2domain, vlan.vlan_id),
            "service": m.ref(node["id"]),
            "description": m.attr(f"{service} (VLAN {vlan.vlan_id})"),
        }
        await self._write([m.update("DcimInterfaceL2", data)], branch)
        return assignment

    async def _reserve(self, service: str, resource: str, kind: str, branch: str, **extra: str | int) -> None:
        """Record ``resource`` as held by ``service`` for every branch. Created on main, where
        Infrahub serialises creates of a kind with a uniqueness constraint: of two concurrent
        claims one gets a uniqueness violation. Raises _Taken when another service holds it."""
        data = {
            "resource": m.attr(resource),
            "kind": m.attr(kind),
            "service_identifier": m.attr(service),
            "claimed_on": m.attr(branch),
            **{name: m.attr(v) for name, v in extra.items()},
        }
        try:
            await self._gql(q.CREATE_RESERVATION, {"data": data})
            return
        except GraphQLError as exc:
            if "unique" not in messages(exc).lower():
                raise
        found = nodes(await self._gql(q.RESERVATION, {"resource": resource}), RESERVATION)
        if not found or value(found[0], "service_identifier") != service:
            raise _Taken(resource)
        if value(found[0], "released_on") == branch:  # claimed again on the branch that released it
            await self._write(
                [m.update(RESERVATION, {"id": found[0]["id"], "released_on": m.attr(None)})], MAIN
            )

    async def ensure_gateway(
        self, service: str, *, device: str, vlan: Vlan, address: IPv4Interface, branch: str
    ) -> Gateway:
        try:
            return await self._ensure_gateway(
                service, device=device, vlan=vlan, address=address, branch=branch
            )
        except GraphQLError as error:
            if "uniqueness constraint" not in str(error):
                raise
            # An earlier attempt's write landed after we stopped waiting for it (a retried timeout):
            # read again and add only what is still missing.
            return await self._ensure_gateway(
                service, device=device, vlan=vlan, address=address, branch=branch
            )

    async def _ensure_gateway(
        self, service: str, *, device: str, vlan: Vlan, address: IPv4Interface, branch: str
    ) -> Gateway:
        node, _ = await self._require(service, branch)
        name = policy.gateway_interface_name(vlan.vlan_id)
        gateway = Gateway(device=device, interface=name, address=address, vlan_id=vlan.vlan_id)
        if to_implementation(node).gateway == gateway:
            return gateway
        vlan_node = held_vlan(node)
        vlan_ref = m.ref(vlan_node["id"]) if vlan_node else m.hfid(vlan.l2domain, vlan.vlan_id)
        existing = next(
            (
                i
                for i in interfaces(node, "DcimInterfaceL3")
                if value(i, "name") == name and value(peer(i, "device"), "name") == device
            ),
            None,
        )
        ops: list[m.Op] = []
        if existing is None:
            ops.append(
                m.create(
                    "DcimInterfaceL3",
                    {
                        "name": m.attr(name),
                        "device": m.hfid(device),
                        "role": m.attr(policy.CUSTOMER_ROLE),
                        "status": m.attr("active"),
                        "enabled": m.attr(True),
                        "description": m.attr(f"Gateway of {service}"),
                        "vlan": vlan_ref,
                        "service": m.ref(node["id"]),
                    },
                )
            )
        elif peer(existing, "vlan") is None:
            ops.append(m.update("DcimInterfaceL3", {"id": existing["id"], "vlan": vlan_ref}))
        addresses = peers(existing, "ip_addresses") if existing else []
        if not any(IPv4Interface(value(a, "address")) == address for a in addresses):
            ops.append(
                m.create(
                    "IpamIPAddress",
                    {
                        "address": m.attr(str(address)),
                        "interface": m.hfid(device, name),
                        "description": m.attr(f"Gateway of {service}"),
                        "service": m.ref(node["id"]),
                    },
                )
            )
        prefix = peer(node, "prefix")
        if prefix is not None:
            ops.append(
                m.update("IpamPrefix", {"id": prefix["id"], "gateway": m.hfid(str(address), "default")})
            )
        await self._write(ops, branch)
        return gateway

    async def release_vlan(self, service: str, *, branch: str) -> None:
        node, _ = await self._require(service, branch)
        vlan = peer(node, "vlan")
        if vlan is None:
            return
        on_main = peer((await self._require(service, MAIN))[0], "vlan") if branch != MAIN else None
        if on_main is not None and on_main["id"] == vlan["id"]:
            if value(vlan, "status") != RELEASED_VLAN_STATUS:
                op = m.update("IpamVLAN", {"id": vlan["id"], "status": m.attr(RELEASED_VLAN_STATUS)})
                await self._write([op], branch)
            return
        await self._write([m.delete("IpamVLAN", vlan["id"])], branch)

    async def release_prefix(self, service: str, *, branch: str) -> None:
        node, records = await self._require(service, branch)
        prefix = peer(node, "prefix")
        if prefix is None:
            return
        ops = [m.delete("IpamPrefix", prefix["id"])]
        record = _record(records, _prefix_resource(IPv4Network(value(prefix, "prefix"))))
        if record is not None:
            ops.append(_release_record(record, branch))
        await self._write(ops, branch)

    async def release_port(self, service: str, *, branch: str) -> None:
        node, records = await self._require(service, branch)
        ops: list[m.Op] = []
        for interface in interfaces(node, "DcimInterfaceL2"):
            ops.append(_free_port(interface["id"]))
            record = _record(records, _port_resource(_key(interface)))
            if record is not None:
                ops.append(_release_record(record, branch))
        await self._write(ops, branch)

    async def release_gateway(self, service: str, *, branch: str) -> None:
        node, _ = await self._require(service, branch)
        ops: list[m.Op] = []
        for interface in interfaces(node, "DcimInterfaceL3"):
            ops += [m.delete("IpamIPAddress", a["id"]) for a in peers(interface, "ip_addresses")]
            ops.append(m.delete("DcimInterfaceL3", interface["id"]))
        await self._write(ops, branch)

    async def discard_changes(self, service: str, *, branch: str) -> None:
        if branch == MAIN:
            return
        node, records = await self._require(service, branch)
        main_node, _ = await self._require(service, MAIN)
        ops: list[m.Op] = []
        main_l3 = {i["id"] for i in interfaces(main_node, "DcimInterfaceL3")}
        for interface in interfaces(node, "DcimInterfaceL3"):
            if interface["id"] not in main_l3:
                ops += [m.delete("IpamIPAddress", a["id"]) for a in peers(interface, "ip_addresses")]
                ops.append(m.delete("DcimInterfaceL3", interface["id"]))
        main_l2 = {i["id"]: i for i in interfaces(main_node, "DcimInterfaceL2")}
        for interface in interfaces(node, "DcimInterfaceL2"):
            if interface["id"] not in main_l2:
                ops.append(_free_port(interface["id"]))
        for interface in main_l2.values():  # main's configuration back onto the branch
            ops.append(_restore_port(interface, main_node["id"]))
        prefix, main_prefix = peer(node, "prefix"), peer(main_node, "prefix")
        if prefix is not None and (main_prefix is None or main_prefix["id"] != prefix["id"]):
            ops.append(m.delete("IpamPrefix", prefix["id"]))
        vlan, main_vlan = peer(node, "vlan"), peer(main_node, "vlan")
        if vlan is not None and (main_vlan is None or main_vlan["id"] != vlan["id"]):
            ops.append(m.delete("IpamVLAN", vlan["id"]))
        elif vlan is not None and value(vlan, "status") != value(main_vlan, "status"):
            ops.append(m.update("IpamVLAN", {"id": vlan["id"], "status": m.attr(value(main_vlan, "status"))}))
        state = {
            name: m.attr(value(main_node, name))
            for name in ("status", "bandwidth", "ip_package")
            if value(node, name) != value(main_node, name)
        }
        if state:
            ops.append(m.update(SERVICE, {"id": node["id"], **state}))
        # What the branch claimed goes back; what it released stays held. Reservations go first: the
        # mutations run one after the other, and a prefix deleted before its reservation is free in
        # the pool for a concurrent allocation that then finds it reserved.
        claims: list[m.Op] = []
        for record in records:
            if value(record, "claimed_on") == branch:
                claims.append(m.delete(RESERVATION, record["id"]))
            elif value(record, "released_on") == branch:
                claims.append(m.update(RESERVATION, {"id": record["id"], "released_on": m.attr(None)}))
        await self._write(claims + ops, branch)

    # ------------------------------------------------------------------ branches and proposed changes
    async def create_branch(self, name: str) -> None:
        if name == MAIN:
            return
        try:
            await self._gql(q.CREATE_BRANCH, {"name": name})
        except GraphQLError as exc:
            if "already exist" not in messages(exc).lower():
                raise
        except InventoryUnavailable:
            # The creation runs as an Infrahub task; on a busy server it outlasts the request (60 s)
            # and goes on. Wait for the branch (raises if Infrahub is down or never creates it).
            deadline = time.monotonic() + self.merge_timeout
            while not (await self._gql(q.BRANCH, {"name": name})).get("Branch"):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(2.0)

    async def open_proposed_change(self, branch: str, title: str, description: str) -> ProposedChange:
        current = await self._newest_change(branch)
        if current is not None and current.state is ChangeState.OPEN:
            if (current.name, current.description) == (title, description):
                return current
            # Re-opened with a fresh plan: record it, and run the pipeline again for it.
            data = {"id": current.id, "name": m.attr(title), "description": m.attr(description)}
            result = await self._gql(q.UPDATE_PROPOSED_CHANGE, {"data": data})
            await self._gql(q.RUN_CHECKS, {"id": current.id})
            return to_change(result["CoreProposedChangeUpdate"]["object"])
        data = {
            "name": m.attr(title),
            "description": m.attr(description),
            "source_branch": m.attr(branch),
            "destination_branch": m.attr(MAIN),
        }
        try:
            result = await self._gql(q.CREATE_PROPOSED_CHANGE, {"data": data})
        except GraphQLError as exc:
            if "branch" in messages(exc).lower():
                raise ServiceConflict(f"no branch {branch!r}: {messages(exc)}") from exc
            raise
        return to_change(result["CoreProposedChangeCreate"]["object"])

    async def _newest_change(self, branch: str) -> ProposedChange | None:
        found = nodes(await self._gql(q.PROPOSED_CHANGES, {"branch": branch}), "CoreProposedChange")
        if not found:
            return None
        return to_change(max(found, key=lambda n: str(n["id"])))

    async def get_proposed_change(self, branch: str) -> ProposedChange | None:
        change = await self._newest_change(branch)
        if change is not None and change.state is ChangeState.MERGED:
            # A read-only account that looks first may not write: the next account allowed to finishes it.
            with contextlib.suppress(PermissionDenied):
                await self._finish_merge(change.branch)
        return change

    async def _change_node(self, change_id: str) -> dict[str, Any]:
        found = nodes(await self._gql(q.PROPOSED_CHANGE, {"id": change_id}), "CoreProposedChange")
        if not found:
            raise ServiceConflict(f"no proposed change {change_id!r}")
        return found[0]

    async def _change(self, change_id: str) -> ProposedChange:
        return to_change(await self._change_node(change_id))

    async def merge_proposed_change(self, change_id: str, *, by: str | None = None) -> ProposedChange:
        """Merge as the architect would, once the change's checks allow it.

        First the checks themselves, here (``review``): a change they refuse is refused at once, with
        their messages. Then Infrahub's own pipeline: wait until every check a registered repository
        declares has run since the change's plan was last recorded, and every other validator has
        finished; a failed one refuses the merge with its messages. Then the merge, through the state
        update Infrahub checks against the account's ``merge_proposed_change`` permission (Infrahub
        1.11's ``CoreProposedChangeMerge`` mutation does not check it: any account that may edit main
        could merge). It runs as an Infrahub task (tens of seconds) and the state is read back;
        Infrahub puts the change back to ``open`` when it refuses it, and the reason is read from the
        validators again."""
        node = await self._change_node(change_id)
        deadline = time.monotonic() + self.merge_timeout
        state = str(value(node, "state"))
        if state in ("closed", "canceled"):
            raise ServiceConflict(f"proposed change {change_id} is {state} and cannot be merged")
        branch = str(value(node, "source_branch"))
        if state != "merged":
            found = await self.review(branch)
            if found.violations:
                raise checks.refusal(change_id, branch, [v.message for v in found.violations])
            await self._pipeline_passed(change_id, branch, deadline)
        delay = 1.0
        last = ""
        while (state := str(value(node, "state"))) != "merged":
            if state in ("closed", "canceled"):
                raise ServiceConflict(f"proposed change {change_id} is {state} and cannot be merged")
            if time.monotonic() > deadline:
                raise ServiceConflict(
                    f"proposed change {change_id} could not be merged within {self.merge_timeout:.0f}s "
                    f"(still {state}: its checks failed or are still running{'; ' + last if last else ''})"
                )
            if state == "open":
                await self._pipeline_passed(change_id, branch, deadline)  # refused by Infrahub: why
                try:
                    # Waits for Infrahub's merge task: allow it the whole merge deadline.
                    await self._gql(q.MERGE_PROPOSED_CHANGE, {"id": change_id}, timeout=self.merge_timeout)
                except GraphQLError as exc:
                    if "not allowed to merge" in messages(exc).lower():
                        raise PermissionDenied(f"Infrahub refused: {messages(exc)}") from exc
                    last = messages(exc)  # checks unfinished or failed, decided meanwhile: read again
                except InventoryUnavailable as exc:
                    last = str(exc)  # the merge outlasted the request; it goes on in Infrahub
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5.0)
            node = await self._change_node(change_id)
        change = to_change(node)
        await self._finish_merge(change.branch)
        return change

    async def review(self, branch: str) -> review.Review:
        """What the service review check finds on ``branch`` (``checks/service_review.py``, which
        Infrahub runs in the pipeline): the same query, on the branch and on main as the branch last
        saw it, judged by the same function."""
        text = review.query_text()
        on_branch = await self._gql(text, {"branch": branch}, branch)
        base = await self._gql(text, {"branch": branch}, MAIN, at=review.branched_from(on_branch))
        return review.judge(on_branch, base)

    async def _pipeline_passed(self, change_id: str, branch: str, deadline: float) -> None:
        """Wait for the proposed change's pipeline; raise ChangeRefused when a validator failed.

        A check a registered repository declares counts only once it ran for the plan the change
        records now: one that started before the change was last re-opened is still to come. A
        validator still in progress ``LOST_VALIDATOR_SECONDS`` after it started lost its task (an
        overloaded task manager refuses to start flow runs, and Infrahub never finishes the
        validator): the pipeline is asked to run again, once, as an architect does in the UI."""
        delay = 1.0
        rerun = False
        while True:
            data = await self._gql(q.VALIDATIONS, {"id": change_id})
            found = nodes(data, "CoreProposedChange")
            if not found:
                raise ServiceConflict(f"no proposed change {change_id!r}")
            since = _when((found[0].get("description") or {}).get("updated_at"))
            definitions = {
                str(d["id"]): f"Check: {value(d, 'name')}" for d in nodes(data, "CoreCheckDefinition")
            }
            pending = dict(definitions)  # definition id (or validator label) -> label
            failed: list[str] = []
            for validator in peers(found[0], "validations"):
                label = str(validator.get("display_label"))
                definition = (peer(validator, "check_definition") or {}).get("id")
                if definition in definitions:
                    started = _when(value(validator, "started_at"))
                    if since is not None and (started is None or started < since):
                        continue  # ran for an earlier plan: still pending
                    del pending[str(definition)]
                if value(validator, "state") != "completed":
                    pending[label] = label
                    started = _when(value(validator, "started_at"))
                    if not rerun and started is not None and _age(started) > LOST_VALIDATOR_SECONDS:
                        rerun = True
                        await self._gql(q.RUN_CHECKS, {"id": change_id})
                elif value(validator, "conclusion") != "success" and validator.get("__typename") != (
                    "CoreDataValidator"  # conflicts: Infrahub decides them on the merge itself
                ):
                    failed += _failures(validator)
            if failed:
                raise checks.refusal(change_id, branch, failed)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ServiceConflict(
                    f"proposed change {change_id}: its checks did not finish within {self.merge_timeout:.0f}s "
                    f"({', '.join(sorted(pending.values()))})"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    async def close_proposed_change(self, change_id: str, *, by: str | None = None) -> ProposedChange:
        change = await self._change(change_id)
        if change.state is ChangeState.MERGED:
            raise ServiceConflict(f"proposed change {change_id} is merged and cannot be closed")
        if change.state is ChangeState.CLOSED:
            return change
        result = await self._gql(q.CLOSE_PROPOSED_CHANGE, {"id": change_id})
        return to_change(result["CoreProposedChangeUpdate"]["object"])

    # ------------------------------------------------------------------ reconciliation support
    async def leaks(self) -> list[str]:
        """Reservations whose service is gone from main, or is decommissioned and still holds them."""
        live = {s.service_identifier: s.status for s in await self.list_services(MAIN)}
        found: list[str] = []
        for record in await self._paged(q.ALL_RESERVATIONS, RESERVATION):
            owner = str(value(record, "service_identifier"))
            status = live.get(owner)
            if status is None or (
                status is ServiceStatus.DECOMMISSIONED and value(record, "claimed_on") == MAIN
            ):
                found.append(f"{value(record, 'resource')} reserved for {owner}")
        return found

    async def _finish_merge(self, branch: str) -> None:
        """What a merge leaves to do on main: port claims made on the branch become main's, ports
        released there are given back, and VLANs whose release was deferred are deleted."""
        if branch in self._finished:
            return
        for attempt in range(3):
            data = await self._gql(q.PENDING_AFTER_MERGE, {"branch": branch})
            ops = [
                m.update(RESERVATION, {"id": n["id"], "claimed_on": m.attr(MAIN)})
                for n in nodes(data, "claimed")
            ]
            ops += [m.delete(RESERVATION, n["id"]) for n in nodes(data, "released")]
            ops += [m.delete("IpamVLAN", n["id"]) for n in nodes(data, "IpamVLAN")]
            try:
                await self._write(ops, MAIN)
                break
            except GraphQLError as exc:
                # Another party finishing the same merge (the run's wait, the architect, reconcile)
                # deleted some of these first: read again and do what is left.
                if attempt == 2 or "unable to find the node" not in messages(exc).lower():
                    raise
        if branch != MAIN:
            # A merged branch keeps its own copy of what it created, and both pools read every
            # branch: while the branch lives, a VLAN ID or prefix it allocated stays taken even
            # after main deletes it. Its proposed changes stay (merged) for the record.
            try:
                await self._gql(q.DELETE_BRANCH, {"name": branch})
            except GraphQLError as exc:
                if "not found" not in messages(exc).lower():
                    raise
            except InventoryUnavailable:
                # The deletion runs as an Infrahub task; on a busy server it outlasts the request
                # (60 s), and goes on. Wait for the branch to be gone (raises if Infrahub is down).
                deadline = time.monotonic() + self.merge_timeout
                while (await self._gql(q.BRANCH, {"name": branch})).get("Branch"):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(2.0)
        self._finished.add(branch)


def _age(moment: datetime) -> float:
    return (datetime.now(UTC) - moment).total_seconds()


def _when(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def _failures(validator: dict[str, Any]) -> list[str]:
    """What a failed validator says: the errors its checks logged (``Message: ...`` then ``Level:
    ERROR`` in a user check's log), else the label of each failed check."""
    label = str(validator.get("display_label"))
    found: list[str] = []
    for check in peers(validator, "checks"):
        if value(check, "conclusion") == "success":
            continue
        lines = str(value(check, "message") or "").splitlines()
        errors = [
            line.removeprefix("Message: ")
            for line, level in zip(lines, [*lines[1:], ""], strict=True)
            if line.startswith("Message: ") and level.strip() == "Level: ERROR"
        ]
        found += [f"{label}: {e}" for e in errors] or [f"{label}: {check.get('display_label')} failed"]
    return found or [f"{label} failed"]


class _Taken(Exception):
    """Another service holds the resource."""


def _port_resource(port_id: str) -> str:
    return f"port:{port_id}"


def _prefix_resource(prefix: IPv4Network) -> str:
    return f"prefix:{prefix}"


def _record(records: list[dict[str, Any]], resource: str) -> dict[str, Any] | None:
    return next((r for r in records if value(r, "resource") == resource), None)


def _release_record(record: dict[str, Any], branch: str) -> m.Op:
    """A reservation released on ``branch``: gone at once if the branch made it, else when the
    branch is merged."""
    if branch == MAIN or value(record, "claimed_on") == branch:
        return m.delete(RESERVATION, record["id"])
    return m.update(RESERVATION, {"id": record["id"], "released_on": m.attr(branch)})


def _key(interface: dict[str, Any]) -> str:
    return port_key(str(value(peer(interface, "device"), "name")), str(value(interface, "name")))


def _free_port(interface_id: str) -> m.Op:
    return m.update(
        "DcimInterfaceL2",
        {
            "id": interface_id,
            "enabled": m.attr(False),
            "status": m.attr("free"),
            "l2_mode": m.attr(None),
            "untagged_vlan": None,
            "service": None,
            "description": m.attr(None),
        },
    )


def _restore_port(interface: dict[str, Any], service_id: str) -> m.Op:
    untagged = peer(interface, "untagged_vlan")
    return m.update(
        "DcimInterfaceL2",
        {
            "id": interface["id"],
            "enabled": m.attr(value(interface, "enabled")),
            "status": m.attr(value(interface, "status")),
            "l2_mode": m.attr(value(interface, "l2_mode")),
            "untagged_vlan": m.ref(untagged["id"]) if untagged else None,
            "service": m.ref(service_id),
            "description": m.attr(value(interface, "description")),
        },
    )
