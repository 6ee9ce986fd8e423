"""The inventory port on a live Infrahub (tested on 1.11.9; written for 1.4+), through infrahub-sdk.

How each promise of the port (``allocation.inventory``) maps onto Infrahub:

- Services are ``ServiceDedicatedInternet`` nodes: branch-agnostic identity (identifier, account,
  site), branch-aware status, bandwidth and package. Created on main.
- A step reads once: ``planning_view`` is one GraphQL document (the service on the branch with its
  reservations and proposed changes, the site with its free ports, the site's port reservations,
  the pools and what they have left). The first read of a service whose site this client does not
  know yet takes two (the site's reservations are filtered by the site's name).
- A step writes once where nothing depends on what Infrahub allocates, twice where something does:
  ``apply_changes`` sends the releases, the port claim, the VLAN (``from_pool`` in the VLAN's create)
  and the prefix (``InfrahubIPPrefixPoolGetResource``, keyed by the allocation key) in one document,
  then the port's configuration, the reservations and the gateway (named for the VLAN ID, at the
  prefix's first host) in a second. Nodes are created with ids chosen here, so later mutations of a
  document can point at them.
- Only the first step on a branch, on a client, reads: a step's last write document ends with an
  update of the service that changes nothing and returns it as a read would (a document's mutations
  run in order), and the next step starts from that and the reservations the write made or gave
  back. A new branch starts as the view of main read just before it was created. A resumed run (a
  new process, another client) reads again.
- Ports, prefixes and VLAN IDs held by a service are also recorded as ``ServiceReservation`` nodes
  (branch-agnostic, unique ``resource``). A port claim is such a create: Infrahub checks uniqueness
  across every branch under a lock, so of two concurrent claims of one port exactly one succeeds,
  the other gets a uniqueness violation, which is ``PortTaken``. A reservation records the branch
  that made it (``claimed_on``) and the branch whose merge gives it back (``released_on``); pool room
  is counted from them (Infrahub reports a prefix pool's use for one branch's view only).

Where Infrahub differs, and what this backend does about it:

- Both pools count a resource as used when *any* branch holds it, and a branch's own copy wins
  over main's: a VLAN deleted on a branch frees its number at once for everybody (the next
  allocation then collides with main's VLAN on ``[l2domain, vlan_id]``), and a VLAN or prefix a
  merged branch created stays taken while that branch exists, even after main deletes it. The
  same holds for prefixes: a prefix deleted on a decommission branch would be handed to the next
  request at once, while main still holds it until the merge. So: a VLAN or prefix that main
  holds is released on a branch by setting its status to ``deprecated`` (a prefix is also
  unlinked from the service; the proposed change shows both) and deleted from main after the
  merge; and a merged branch is deleted once its merge is finished (its proposed changes stay,
  merged, for the record).
- What a merge leaves to do (reservations claimed or released on the branch, deferred VLAN
  deletions, deleting the branch) is done by ``_finish_merge``: run by ``merge_proposed_change``
  and, for a change merged in Infrahub's UI, the first time ``get_proposed_change`` sees it
  merged (``lifecycle.conclude`` always asks). It is idempotent and safe when several parties
  finish the same merge at once: a node another party deleted first counts as done.
- ``discard_changes`` cannot undo a deletion on a branch (Infrahub has no per-node revert): it
  deletes what the branch created and writes main's values back onto what the branch changed.
- Prefix pool room compares free addresses with the prefix size; it does not see fragmentation
  (``apply_changes`` still raises ``PoolExhausted`` when Infrahub finds none). VLAN and prefix
  room counts this factory's reservations only.
- Merging runs as an Infrahub task (tens of seconds), which Infrahub refuses while a check of the
  change's pipeline failed or is unfinished (or does not know of a check still to come), and each
  refused merge is a task of its own: the backend judges the branch itself first (the same check,
  ``review``), waits for the pipeline (up to ``merge_timeout``), refuses with the failed checks'
  messages, and only then submits the merge; the request waits for Infrahub's merge task, and the
  state is read back.
- A branch created before a schema change keeps the old schema: load schemas before creating
  review branches (``scripts/infrahub-bootstrap``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from ipaddress import IPv4Interface, IPv4Network
from typing import Any

from infrahub_sdk.exceptions import GraphQLError

from allocation import checks, policy
from allocation.backends.infrahub import mutations as m
from allocation.backends.infrahub import queries as q
from allocation.backends.infrahub import review
from allocation.backends.infrahub.client import Busy, Connection, messages
from allocation.backends.infrahub.mapping import (
    RELEASED_VLAN_STATUS,
    created_at,
    interfaces,
    nodes,
    peer,
    peers,
    port_key,
    to_change,
    to_device,
    to_implementation,
    to_port,
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
    Changes,
    ChangeState,
    Gateway,
    Implementation,
    PlanningView,
    PoolUsage,
    Port,
    PortAssignment,
    PortUsage,
    PrefixRequest,
    ProposedChange,
    Service,
    Site,
    Vlan,
    VlanRequest,
)

SERVICE = q.SERVICE_KIND
LOST_VALIDATOR_SECONDS = 600.0  # a validator in progress this long lost its task: run the pipeline again
PIPELINE_START_SECONDS = 15.0  # a change younger than this with no validator yet: its pipeline is starting
RESERVATION = q.RESERVATION_KIND
PAGE = 1000
RELEASED_PREFIX_STATUS = (
    "deprecated"  # a customer prefix released on a branch, deleted from main after the merge
)
ANSWER = "service"  # the alias of the mutation that returns the service at the end of a step's write
FRESH_SECONDS = 300.0  # how old a remembered view (its oldest part) may be for a step to start from it


@dataclass(frozen=True)
class _Read:
    """What a read found of one service on one branch: its node and its reservations (a view's
    ``handle``, so that a write decided from the view needs no second read). ``at``: when Infrahub
    answered the oldest part of it; ``complete``: whether its view has the site's candidate ports,
    load and pool room (an allocating read's)."""

    branch: str
    node: dict[str, Any] | None
    records: list[dict[str, Any]] = field(default_factory=list)
    at: float = field(default_factory=time.monotonic)
    complete: bool = False


@dataclass(frozen=True)
class _Left:
    """A service on a branch as this client's last write there left it: the node and reservations the
    write's answer showed and, when the write was decided from a planning view, that view brought up
    to date. The next step starts from it instead of reading (see ``_remember``)."""

    read: _Read
    view: PlanningView | None = None


@dataclass
class _Held:
    """A service's implementation on a branch while a write is built: node ids and values."""

    service_id: str
    vlan_id: str | None = None
    vlan: Vlan | None = None
    prefix_id: str | None = None
    prefix: IPv4Network | None = None
    port: Port | None = None
    gateway_ids: tuple[str, ...] = ()  # the gateway's L3 interface and address


class InfrahubInventory:
    """The inventory port on Infrahub. One instance per event loop; ``close()`` it after use."""

    def __init__(
        self,
        address: str,
        token: str | None = None,
        *,
        timeout: int = 60,
        # A proposed change's pipeline takes minutes on a busy stack: the merge waits for it (and
        # branch tasks share the deadline).
        merge_timeout: float = 900.0,
        connection: Connection | None = None,
        access_token: str | None = None,
    ) -> None:
        self._conn = connection or Connection(address, token, timeout, access_token=access_token)
        self._finished: set[str] = set()
        self._site_of: dict[str, str] = {}  # service identifier -> site: immutable, safe to remember
        self._branch_of: dict[str, str] = {}  # proposed change id -> its source branch: immutable too
        self._wrote: dict[tuple[str, str], list[str]] = {}  # see written_nodes
        # The last view of a service on main this client read (a branch created from main right
        # after starts as that view), and per service and branch what this client's last write there
        # left: a step's reads are answered from it and its write takes it (see ``_remember``).
        self._main_view: dict[str, PlanningView] = {}
        self._left: dict[tuple[str, str], _Left] = {}
        self.merge_timeout = merge_timeout

    @classmethod
    def from_settings(cls, settings: Any, *, access_token: str | None = None) -> InfrahubInventory:
        """Build from ``allocation.settings.InfrahubSettings`` (duck-typed: no pydantic-settings here);
        with ``access_token`` (a person's JWT), as that person instead of the API token's account."""
        token = settings.api_token.get_secret_value() if settings.api_token is not None else None
        return cls(str(settings.address), token, timeout=int(settings.timeout), access_token=access_token)

    @classmethod
    def from_client(cls, client: Any) -> InfrahubInventory:
        """On an SDK client someone else owns, such as a generator's tracking client: every write then
        goes through that client."""
        return cls(str(client.address), connection=Connection.wrap(client))

    @property
    def address(self) -> str:
        return self._conn.address

    @property
    def round_trips(self) -> int:
        """HTTP requests sent to Infrahub so far (each GraphQL document is one)."""
        return self._conn.round_trips

    @property
    def operations(self) -> dict[str, int]:
        """Requests sent so far per GraphQL operation (``query View``, ``mutation Batch``, ...)."""
        return dict(self._conn.operations)

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

    async def _send(
        self, ops: list[m.Op], branch: str, wait_seconds: int | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One document; the data of the mutations that succeeded and the errors of those that failed.
        A document that creates or deletes a branch waits for Infrahub's task (``wait_seconds``)."""
        if not ops:
            return {}, []
        text, variables = m.document(ops)
        if wait_seconds is None and any(op.mutation in ("BranchCreate", "BranchDelete") for op in ops):
            wait_seconds = int(self.merge_timeout)
        try:
            return await self._gql(text, variables, branch, timeout=wait_seconds), []
        except GraphQLError as exc:
            if any(_busy(e) for e in exc.errors):
                raise Busy(f"Infrahub at {self.address} is busy: {messages(exc)}") from exc
            return {}, list(exc.errors)

    async def _branch_task(self, ops: list[m.Op]) -> list[dict[str, Any]]:
        """A document that creates or deletes a branch, sent again while Infrahub's task manager is too
        busy to take the task or the task outlasts the request: creating a branch that exists and
        deleting one that is gone are harmless, so a repeat is safe."""
        delay = 2.0
        deadline = time.monotonic() + self.merge_timeout
        while True:
            try:
                _, errors = await self._send(ops, MAIN)
                return errors
            except Busy:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    async def _write(self, ops: list[m.Op], branch: str, *, missing_ok: bool = False) -> dict[str, Any]:
        """Send ``ops`` as one document. With ``missing_ok`` a mutation whose node is already gone
        (deleted by a concurrent party doing the same work) counts as done; any other error raises."""
        if not ops:
            return {}
        text, variables = m.document(ops)
        try:
            return await self._gql(text, variables, branch)
        except GraphQLError as exc:
            if not (missing_ok and exc.errors and all(_node_missing(e) for e in exc.errors)):
                raise
            return {}

    async def _read(self, identifier: str, branch: str) -> _Read:
        """The service on ``branch`` with its implementation, and its reservations (one request)."""
        data = await self._gql(q.SERVICE, {"identifier": identifier}, branch)
        found = nodes(data, SERVICE)
        node = found[0] if found else None
        if node is not None:
            self._site_of[identifier] = str(value(peer(node, "location"), "shortname"))
        return _Read(branch, node, nodes(data, RESERVATION))

    async def _require(self, identifier: str, branch: str) -> _Read:
        read = await self._read(identifier, branch)
        if read.node is None:
            raise UnknownService(identifier)
        return read

    # ------------------------------------------------------------------ what the last write left
    # A step's write returns the service as the next step would read it (``_answered``): this client
    # keeps it per service and branch, the next step's reads start from it (the plan, which writes
    # nothing, and the step after it see the same) and that step's write takes it and leaves its own.
    # Only writes on branches are kept; anything else that writes the service there, a write that
    # fails, and age forget it. Another process, or another client, reads: a concurrent party's write
    # in between is met by the write's own checks (uniqueness, nodes gone), as in a read-then-write
    # race.
    def _recall(self, identifier: str, branch: str) -> _Left | None:
        left = self._left.get((identifier, branch))
        if left is not None and time.monotonic() - left.read.at > FRESH_SECONDS:
            del self._left[(identifier, branch)]
            return None
        return left

    def _remember(self, identifier: str, read: _Read, view: PlanningView | None) -> None:
        if read.branch != MAIN and read.node is not None:
            self._left[(identifier, read.branch)] = _Left(read, view)

    def _forget(self, identifier: str | None = None, branch: str | None = None) -> None:
        for key in [k for k in self._left if identifier in (None, k[0]) and branch in (None, k[1])]:
            del self._left[key]

    async def _last_or_read(self, identifier: str, branch: str) -> _Left:
        """The service on ``branch`` as this client's last write left it, or as Infrahub has it."""
        return self._recall(identifier, branch) or _Left(await self._require(identifier, branch))

    # ------------------------------------------------------------------ the read of a step
    async def planning_view(
        self, identifier: str, branch: str, *, site: str | None = None, allocating: bool = True
    ) -> PlanningView:
        left = self._recall(identifier, branch)
        if (
            left is not None
            and left.view is not None
            and (site is None or site == left.view.site.shortname)
            and (left.read.complete or not allocating)
        ):
            return left.view
        view = await self._read_view(identifier, branch, site, allocating)
        if branch == MAIN and identifier:
            self._main_view[identifier] = view
        return view

    async def _read_view(
        self, identifier: str, branch: str, site: str | None, allocating: bool
    ) -> PlanningView:
        site = site or self._site_of.get(identifier)
        variables: dict[str, Any] = {}
        if identifier:
            variables |= {"identifier": identifier, "branches": policy.branch_prefix(identifier)}
        if site is None:
            if not identifier:
                raise UnknownSite("", [])
            data = await self._gql(q.view(service=True, site_variable=False, held=False), variables, branch)
            found = nodes(data, SERVICE)
            if not found:
                raise UnknownService(identifier)
            site_node = peer(found[0], "location")
            site = str(value(site_node, "shortname"))
            if allocating:
                data |= await self._gql(
                    q.view(service=False, site_variable=False, held=True), self._held_variables(site), branch
                )
        else:
            data = await self._gql(
                q.view(service=bool(identifier), site_variable=True, held=allocating),
                variables | ({"site": site} | (self._held_variables(site) if allocating else {})),
                branch,
            )
            found = nodes(data, SERVICE)
            site_node = next(iter(nodes(data, "LocationSite")), None)
        if site_node is None:
            raise UnknownSite(site, await self._site_names())
        service_node = found[0] if found else None
        if service_node is not None:
            self._site_of[identifier] = str(value(peer(service_node, "location"), "shortname"))
        records = nodes(data, "own")
        return self._view(identifier, branch, site_node, service_node, records, data, allocating)

    def view_from(self, data: dict[str, Any], identifier: str, branch: str) -> PlanningView:
        """The planning view in the answer to the generator's query (``queries.generator_query``),
        which Infrahub ran already: no request. It holds the candidate ports and load (from the port
        claims at the service's site), not the pools' room."""
        found = [n for n in nodes(data, SERVICE) if value(n, "service_identifier") == identifier]
        if not found:
            raise UnknownService(identifier)
        site_node = peer(found[0], "location")
        if site_node is None:
            raise UnknownSite("", [])
        self._site_of[identifier] = str(value(site_node, "shortname"))
        return self._view(
            identifier, branch, site_node, found[0], nodes(data, "own"), data, True, counted=False
        )

    def written_nodes(self, identifier: str, branch: str) -> list[str]:
        """Ids of the objects (VLAN, prefix, gateway interface and address) the service held on
        ``branch`` after this client's last write for it; empty if this client wrote nothing there."""
        return list(self._wrote.get((identifier, branch), ()))

    def _held_variables(self, site: str) -> dict[str, Any]:
        return {
            "site": site,
            "vlan_site": f"{policy.VLAN_POOL} {site}",
            "vlan_global": policy.VLAN_POOL,
            "prefix_site": f"{policy.PREFIX_POOL} {site}",
            "prefix_global": policy.PREFIX_POOL,
        }

    def _view(
        self,
        identifier: str,
        branch: str,
        site_node: dict[str, Any],
        service_node: dict[str, Any] | None,
        records: list[dict[str, Any]],
        data: dict[str, Any],
        allocating: bool,
        *,
        counted: bool = True,
    ) -> PlanningView:
        """``counted``: ``data`` counts what the site's pools hold; otherwise the view's room is
        unknown (None)."""
        shortname = str(value(site_node, "shortname"))
        numbers = {str(value(p, "name")): p for p in nodes(data, "CoreNumberPool")}
        prefixes = {str(value(p, "name")): p for p in nodes(data, "CoreIPPrefixPool")}
        domains = {str(value(d, "name")) for d in nodes(data, "IpamL2Domain")}
        vlan_pool, prefix_pool, l2domain = policy.site_pools(shortname, {*numbers, *prefixes}, domains)
        devices = sorted(peers(site_node, "devices"), key=lambda d: str(value(d, "name")))
        site = Site(
            shortname=shortname,
            name=str(value(site_node, "name")),
            devices=tuple(to_device(d) for d in devices),
            vlan_pool=vlan_pool,
            prefix_pool=prefix_pool,
            l2domain=l2domain,
        )
        changes = tuple(
            sorted(
                (
                    to_change(n)
                    for n in nodes(data, "CoreProposedChange")
                    if policy.is_service_branch(identifier, str(value(n, "source_branch")))
                ),
                key=lambda c: c.id,
            )
        )
        for change in changes:
            self._branch_of[change.id] = change.branch
        service = to_service(service_node) if service_node else None
        handle = _Read(branch, service_node, records, complete=allocating)
        if not allocating:
            return PlanningView(service=service, site=site, changes=changes, handle=handle)
        # Ports another service holds on any branch are not free; a port this service claimed and has
        # not configured yet (an interrupted step) is free for it.
        claims = [r for r in nodes(data, "held") if value(r, "site") in (None, shortname)]
        others = {str(value(r, "resource")) for r in claims if value(r, "service_identifier") != identifier}
        load: dict[int, int] = {}
        for record in claims:
            index = int(value(record, "device_index") or 0)
            load[index] = load.get(index, 0) + 1
        first: dict[tuple[str, int], Port] = {}
        for device in devices:
            index = value(device, "index")
            if value(device, "role") != "core" or index not in policy.CORE_SWITCH_INDEXES:
                continue
            name = str(value(device, "name"))
            for interface in peers(device, "interfaces"):
                if interface.get("__typename") != "DcimInterfaceL2":
                    continue
                port = Port(
                    id=port_key(name, str(value(interface, "name"))),
                    device=name,
                    name=str(value(interface, "name")),
                    speed_mbps=int(value(interface, "speed") or 0),
                    device_index=int(index),
                )
                if _port_resource(port.id) in others:
                    continue
                current = first.get((name, port.speed_mbps))
                if current is None or policy.natural_key(port.name) < policy.natural_key(current.name):
                    first[(name, port.speed_mbps)] = port
        return PlanningView(
            service=service,
            site=site,
            free_ports=tuple(sorted(first.values(), key=lambda p: (p.device, p.speed_mbps))),
            switch_load=load,
            room=_room(shortname, numbers, prefixes, data) if counted else None,
            allocating=True,
            changes=changes,
            handle=handle,
        )

    async def list_sites(self) -> list[str]:
        return sorted(await self._site_names())

    async def _site_names(self) -> list[str]:
        return [str(value(s, "shortname")) for s in nodes(await self._gql(q.SITES), "LocationSite")]

    # ------------------------------------------------------------------ services
    async def get_service(self, identifier: str, branch: str) -> Service | None:
        read = await self._read(identifier, branch)
        return to_service(read.node) if read.node else None

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
            self._site_of[request.service_identifier] = request.site
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
                sites = await self._site_names()
                if request.site not in sites:
                    raise UnknownSite(request.site, sites) from exc
                raise
        if (existing.account_reference, existing.site) != (request.account_reference, request.site):
            raise ServiceConflict(
                f"{request.service_identifier} already exists for account {existing.account_reference} "
                f"at {existing.site}"
            )
        return existing

    async def withdraw_service(self, identifier: str) -> None:
        self._forget(identifier)
        read = await self._read(identifier, MAIN)
        node, records = read.node, read.records
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
        op = _service_update(identifier, status, bandwidth, ip_package)
        if op is None:
            await self._require(identifier, branch)
            return
        self._forget(identifier, branch)
        try:
            await self._write([op], branch)
        except GraphQLError as exc:
            if "unable to find" in messages(exc).lower() or "not found" in messages(exc).lower():
                raise UnknownService(identifier) from exc
            raise

    async def branch_off(
        self,
        identifier: str,
        branch: str,
        *,
        status: ServiceStatus | None = None,
        bandwidth: Bandwidth | None = None,
        ip_package: IpPackage | None = None,
    ) -> None:
        """Main's status and the branch in one document (Infrahub runs the update, then the creation:
        the branch starts from the new status), and the branch's own values in a second if any."""
        ops = [op] if (op := _service_update(identifier, status, None, None)) else []
        self._forget(identifier, branch)
        if branch != MAIN:
            ops.append(m.create_branch(branch))
        errors = await self._branch_task(ops)
        unexpected = [e for e in errors if "already exist" not in str(e.get("message", "")).lower()]
        if any(_node_missing(e) for e in unexpected):
            raise UnknownService(identifier)
        if unexpected:
            raise GraphQLError(errors=unexpected)
        if (on_branch := _service_update(identifier, None, bandwidth, ip_package)) is not None:
            await self._write([on_branch], branch)
        self._remember_fresh(
            identifier,
            branch,
            created=branch != MAIN and not errors,
            status=status,
            bandwidth=bandwidth,
            ip_package=ip_package,
        )

    def _remember_fresh(
        self,
        identifier: str,
        branch: str,
        *,
        created: bool,
        status: ServiceStatus | None,
        bandwidth: Bandwidth | None,
        ip_package: IpPackage | None,
    ) -> None:
        """A branch this client has just created from main, right after reading main's view of the
        service: it starts as that view, with the values ``branch_off`` wrote (the same nodes, ids
        and reservations: these are branch-agnostic)."""
        view = self._main_view.pop(identifier, None)
        main = view.handle if view is not None else None
        if (
            not created
            or view is None
            or not isinstance(main, _Read)
            or main.node is None
            or time.monotonic() - main.at > FRESH_SECONDS
        ):
            return
        values = {"status": status, "bandwidth": bandwidth, "ip_package": ip_package}
        node = main.node | {name: m.attr(new.value) for name, new in values.items() if new is not None}
        read = replace(main, branch=branch, node=node)
        self._remember(
            identifier, read, view.model_copy(update={"service": to_service(node), "handle": read})
        )

    # ------------------------------------------------------------------ topology
    async def get_site(self, shortname: str) -> Site:
        data = await self._gql(q.view(service=False, site_variable=True, held=False), {"site": shortname})
        found = nodes(data, "LocationSite")
        if not found:
            raise UnknownSite(shortname, await self._site_names())
        return self._view("", MAIN, found[0], None, [], data, False).site

    async def free_ports(self, site: str, min_speed_mbps: int) -> list[Port]:
        view = await self.planning_view("", MAIN, site=site)
        return [p for p in view.free_ports if p.speed_mbps >= min_speed_mbps]

    async def switch_load(self, site: str) -> dict[int, int]:
        return dict((await self.planning_view("", MAIN, site=site)).switch_load)

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

    async def _pools(self) -> tuple[dict[str, tuple[str, int]], dict[str, tuple[str, int]]]:
        """Number pools and prefix pools: name -> (id, size in IDs or addresses)."""
        data = await self._gql(q.POOLS)
        numbers = {
            str(value(p, "name")): (
                str(p["id"]),
                int(value(p, "end_range")) - int(value(p, "start_range")) + 1,
            )
            for p in nodes(data, "CoreNumberPool")
        }
        prefixes = {
            str(value(p, "name")): (
                str(p["id"]),
                sum(IPv4Network(value(r, "prefix")).num_addresses for r in peers(p, "resources")),
            )
            for p in nodes(data, "CoreIPPrefixPool")
        }
        return numbers, prefixes

    async def pool_has_room(self, pool: str, prefix_length: int | None = None) -> bool:
        numbers, prefixes = await self._pools()
        if prefix_length is None:
            if pool not in numbers:
                return False
            pool_id, size = numbers[pool]
            return await self._number_pool_used(pool_id, size) < size
        if pool not in prefixes:
            return False
        used = (await self._prefix_pools_used()).get(pool, 0)
        return prefixes[pool][1] - used >= int(2 ** (32 - prefix_length))

    async def pool_usage(self) -> list[PoolUsage]:
        numbers, prefixes = await self._pools()
        found = [
            PoolUsage(name=name, kind="number", used=await self._number_pool_used(pool_id, size), total=size)
            for name, (pool_id, size) in numbers.items()
        ]
        prefix_used = await self._prefix_pools_used()
        found += [
            PoolUsage(name=name, kind="prefix", used=prefix_used.get(name, 0), total=size)
            for name, (_, size) in prefixes.items()
        ]
        return sorted(found, key=lambda p: p.name)

    async def port_usage(self) -> list[PortUsage]:
        ports = await self._paged(q.CUSTOMER_PORTS, "DcimInterfaceL2")
        records = await self._paged(q.RESERVATIONS_OF_KIND, RESERVATION, {"kind": "port"})
        taken = {str(value(r, "resource")) for r in records}
        counts: dict[tuple[str, str, int], list[int]] = {}
        for interface in ports:
            device = peer(interface, "device")
            if value(device, "role") != "core":
                continue
            name = str(value(device, "name"))
            site = str(value(peer(device, "location"), "shortname"))
            key = (site, name, int(value(interface, "speed") or 0))
            free_used = counts.setdefault(key, [0, 0])
            free_used[1 if _port_resource(port_key(name, str(value(interface, "name")))) in taken else 0] += 1
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

    # ------------------------------------------------------------------ the write of a step
    async def apply_changes(
        self, identifier: str, changes: Changes, *, branch: str, view: PlanningView | None = None
    ) -> Implementation:
        handle = view.handle if view is not None else None
        if isinstance(handle, _Read) and handle.branch == branch and handle.node is not None:
            left = _Left(handle, view)
        else:
            left = await self._last_or_read(identifier, branch)
        site = view.site if view is not None else None
        return await self._apply(identifier, changes, branch, left.read, site, left.view)

    async def _apply(
        self,
        identifier: str,
        changes: Changes,
        branch: str,
        read: _Read,
        site: Site | None,
        view: PlanningView | None = None,
    ) -> Implementation:
        """``apply_changes`` from what ``read`` found (and ``view``, the planning view around it, if
        any); ``site`` (when known) names the pools of reservations an interrupted step left unmade.
        Leaves the service as its last write document returned it for the next step (``_remember``)."""
        assert read.node is not None
        self._left.pop((identifier, branch), None)  # this step's write takes what the last one left
        node, records = read.node, read.records
        held = _Held(service_id=str(node["id"]))
        current = to_implementation(node)
        vlan_node = peer(node, "vlan")
        if vlan_node is not None:
            held.vlan_id, held.vlan = str(vlan_node["id"]), _vlan(vlan_node)
        if (prefix_node := peer(node, "prefix")) is not None:
            held.prefix_id, held.prefix = str(prefix_node["id"]), IPv4Network(value(prefix_node, "prefix"))
        l2s, l3s = interfaces(node, "DcimInterfaceL2"), interfaces(node, "DcimInterfaceL3")
        if l2s:
            held.port = to_port(l2s[0])

        first: list[m.Op] = []  # releases, the claim, the allocations: nothing here needs an answer
        for role in ("gateway", "port", "prefix", "vlan"):
            if role in changes.release:
                first += self._release(role, identifier, node, records, branch, held)
                if role == "gateway":
                    l3s = []
        if changes.port is not None:
            if held.port is not None and held.port.id != changes.port.id:
                raise ServiceConflict(f"{identifier} holds {held.port.id}; release it before moving")
            first += _claim(
                identifier, changes.port, records, branch, str(value(peer(node, "location"), "shortname"))
            )
            first += _forget_unconfigured_claims(records, branch, changes.port, l2s)
        new_vlan = None
        if changes.vlan is not None:
            if vlan_node is not None and value(vlan_node, "status") == RELEASED_VLAN_STATUS:
                # Its release is being taken back.
                first.append(m.update("IpamVLAN", {"id": held.vlan_id, "status": m.attr("active")}))
                record = _record(records, _vlan_resource(held.vlan)) if held.vlan else None
                if record is not None and value(record, "released_on") == branch:
                    first.append(m.update(RESERVATION, {"id": record["id"], "released_on": m.attr(None)}))
            elif vlan_node is None:
                held.vlan_id = new_vlan = str(uuid.uuid4())
                first.append(_create_vlan(identifier, new_vlan, changes.vlan, held.service_id))
        new_prefix = False
        if changes.prefix is not None:
            if held.prefix is not None and held.prefix.prefixlen != changes.prefix.length:
                raise ServiceConflict(
                    f"{identifier} holds {held.prefix}; release it before asking for a /{changes.prefix.length}"
                )
            if held.prefix is None:
                if held.vlan_id is None:
                    raise ServiceConflict(f"{identifier} has no VLAN on {branch}")
                new_prefix = True
                first.append(_allocate_prefix(identifier, changes.prefix.pool, changes.prefix.length, held))

        # The service comes back with the last document of the step; not on main, where the kinds a
        # mutation's answer selects would count as written there (Infrahub's permissions).
        answering = branch != MAIN
        answer: dict[str, Any] | None = None
        if first:
            if answering and _only_releases(changes):  # then nothing is left for a second write
                first = [*first, _answer(held.service_id)]
            data, errors = await self._send(first, branch)
            if errors:
                await self._fail(identifier, changes, first, errors)
                # Only nodes a concurrent party deleted first: what this step wrote stands, read it.
                return await self._written(identifier, changes, branch, site)
            answer = _answered(data)
            if new_vlan is not None:
                created = data["vlan"]["object"]
                assert changes.vlan is not None
                held.vlan = Vlan(
                    vlan_id=int(value(created, "vlan_id")),
                    name=policy.vlan_name(identifier),
                    l2domain=changes.vlan.l2domain,
                )
            if new_prefix:
                allocated = data["prefix"]["node"]
                held.prefix_id, held.prefix = (
                    str(allocated["id"]),
                    IPv4Network(str(allocated["display_label"])),
                )

        second = self._configure(
            identifier, changes, branch, node, records, held, l3s, site, new_vlan, new_prefix
        )
        if second:
            if answering:
                second = [*second, _answer(held.service_id)]
            data, errors = await self._send(second, branch)
            if errors:
                errors, data = await self._recorded_elsewhere(identifier, second, errors, branch)
                if errors:
                    raise GraphQLError(errors=errors)
            answer = _answered(data)
        if first or second:
            self._wrote[(identifier, branch)] = [
                i for i in (held.vlan_id, held.prefix_id, *held.gateway_ids) if i is not None
            ]
            if answer is not None:
                after = replace(read, node=answer, records=_records_after(records, [*first, *second]))
                self._remember(
                    identifier, after, _view_after(view, after, [*first, *second]) if view else None
                )
        else:  # nothing to write: the branch is as read
            self._remember(identifier, read, view)
        return self._implementation(current, changes, held)

    def _release(
        self,
        role: str,
        identifier: str,
        node: dict[str, Any],
        records: list[dict[str, Any]],
        branch: str,
        held: _Held,
    ) -> list[m.Op]:
        ops: list[m.Op] = []
        if role == "gateway":
            for interface in interfaces(node, "DcimInterfaceL3"):
                ops += [m.delete("IpamIPAddress", a["id"]) for a in peers(interface, "ip_addresses")]
                ops.append(m.delete("DcimInterfaceL3", interface["id"]))
        elif role == "port":
            for interface in interfaces(node, "DcimInterfaceL2"):
                record = _record(records, _port_resource(_key(interface)))
                if record is not None:
                    ops.append(_release_record(record, branch))
                ops.append(_free_port(interface["id"]))
            held.port = None
        elif role == "prefix" and held.prefix_id is not None and held.prefix is not None:
            record = _record(records, _prefix_resource(held.prefix))
            # The reservation goes first: mutations run one after the other, and a prefix deleted
            # before its reservation is free in the pool for a concurrent allocation that then finds
            # it reserved.
            if record is not None:
                ops.append(_release_record(record, branch))
            if branch == MAIN or (record is not None and value(record, "claimed_on") == branch):
                ops.append(m.delete("IpamPrefix", held.prefix_id))
            else:
                # A prefix deleted on a branch is free in the pool at once, for every branch, while
                # main still holds it until the merge: it is set aside (deprecated, no longer the
                # service's) on the branch and deleted from main after the merge.
                ops.append(
                    m.update(
                        "IpamPrefix",
                        {"id": held.prefix_id, "status": m.attr(RELEASED_PREFIX_STATUS), "service": None},
                    )
                )
            held.prefix_id = held.prefix = None
        elif role == "vlan" and held.vlan_id is not None and held.vlan is not None:
            record = _record(records, _vlan_resource(held.vlan))
            made_here = record is not None and value(record, "claimed_on") == branch
            if record is not None:
                ops.append(_release_record(record, branch))
            if branch == MAIN or made_here:
                ops.append(m.delete("IpamVLAN", held.vlan_id))
            elif value(peer(node, "vlan"), "status") != RELEASED_VLAN_STATUS:
                # Main holds it (or nobody recorded where it was made): deleted from main after the merge.
                ops.append(m.update("IpamVLAN", {"id": held.vlan_id, "status": m.attr(RELEASED_VLAN_STATUS)}))
            held.vlan_id = held.vlan = None
        return ops

    def _configure(
        self,
        identifier: str,
        changes: Changes,
        branch: str,
        node: dict[str, Any],
        records: list[dict[str, Any]],
        held: _Held,
        l3s: list[dict[str, Any]],
        site: Site | None,
        new_vlan: str | None,
        new_prefix: bool,
    ) -> list[m.Op]:
        """The second write: what needs the VLAN ID and the prefix Infrahub allocated."""
        ops: list[m.Op] = []
        vlan, prefix = held.vlan, held.prefix
        if changes.port is not None and vlan is not None and held.vlan_id is not None:
            device, name = changes.port.id.split(":", 1)
            ops.append(
                m.update(
                    "DcimInterfaceL2",
                    {
                        **m.hfid(device, name),
                        "enabled": m.attr(True),
                        "status": m.attr("active"),
                        "l2_mode": m.attr("Access"),
                        "untagged_vlan": m.ref(held.vlan_id),
                        "service": m.ref(held.service_id),
                        "description": m.attr(f"{identifier} (VLAN {vlan.vlan_id})"),
                    },
                )
            )
            held.port = changes.port
        # Reservations of what the service holds: made with the allocation, or completed now if an
        # earlier step was interrupted between its two writes.
        if vlan is not None and _record(records, _vlan_resource(vlan)) is None:
            pool = changes.vlan.pool if changes.vlan else site.vlan_pool if site else None
            if new_vlan is not None or pool is not None:
                ops.append(
                    _reserve(identifier, _vlan_resource(vlan), "vlan", branch, pool=pool, alias="vlan_record")
                )
        prefix_record = _record(records, _prefix_resource(prefix)) if prefix is not None else None
        if new_prefix and prefix_record is not None and value(prefix_record, "released_on") == branch:
            # Infrahub's pool answers an allocation key it has seen with the prefix it gave then: here
            # the one this branch set aside. It is the service's again, as before the release.
            assert held.prefix_id is not None and held.vlan_id is not None
            ops.append(
                m.update(
                    "IpamPrefix",
                    {
                        "id": held.prefix_id,
                        "status": m.attr("active"),
                        "service": m.ref(held.service_id),
                        "vlan": m.ref(held.vlan_id),
                    },
                )
            )
            ops.append(m.update(RESERVATION, {"id": prefix_record["id"], "released_on": m.attr(None)}))
        if prefix is not None and prefix_record is None:
            pool = changes.prefix.pool if changes.prefix else site.prefix_pool if site else None
            if new_prefix or pool is not None:
                ops.append(
                    _reserve(
                        identifier,
                        _prefix_resource(prefix),
                        "prefix",
                        branch,
                        pool=pool,
                        size=prefix.num_addresses,
                        alias="prefix_record",
                    )
                )
        if changes.gateway is not None:
            if vlan is None or prefix is None or held.vlan_id is None or held.prefix_id is None:
                raise ServiceConflict(f"{identifier} has no VLAN and prefix for a gateway on {branch}")
            ops += _gateway(identifier, changes.gateway, vlan, held, prefix, l3s)
        elif "gateway" not in changes.release:
            held.gateway_ids = tuple(
                i for l3 in l3s for i in (str(l3["id"]), *(str(a["id"]) for a in peers(l3, "ip_addresses")))
            )
        return ops

    async def _fail(
        self, identifier: str, changes: Changes, ops: list[m.Op], errors: list[dict[str, Any]]
    ) -> None:
        """Turn the errors of a step's first write into the domain's. Returns only when every error is
        about a node already gone (a concurrent party did the same work first)."""
        names = {m.name_of(op, i): op for i, op in enumerate(ops)}
        for error in errors:
            path = error.get("path") or [""]
            text = str(error.get("message", "")).lower()
            if path[0] == "claim" and changes.port is not None:
                if "unique" in text and not await self._held_by(identifier, _port_resource(changes.port.id)):
                    raise PortTaken(changes.port.id)
                if "unique" in text:
                    continue  # claimed by another run of this same step
            if path[0] == "vlan" and changes.vlan is not None and "exhausted" in text:
                raise PoolExhausted(changes.vlan.pool, "VLAN ID")
            if (
                path[0] == "prefix"
                and changes.prefix is not None
                and ("no more resources" in text or "exhausted" in text)
            ):
                raise PoolExhausted(changes.prefix.pool, f"/{changes.prefix.length} prefix")
            if _node_missing(error) and names.get(str(path[0])) is not None:
                continue
            raise GraphQLError(errors=errors)

    async def _recorded_elsewhere(
        self, identifier: str, ops: list[m.Op], errors: list[dict[str, Any]], branch: str
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """A VLAN ID or prefix a pool has just handed out is still recorded for another service.

        A record claimed on a branch that no longer exists is void (the branch, and what it took, is
        gone: deleted without its claims discarded, e.g. after a merge that never finished): it is
        removed and this service's record written again. Otherwise the pools and the reservations
        disagree (a release on a branch by a client that deletes instead of setting aside, under
        review): raised as a domain error, so the step gives back what it took. Returns the errors
        that are not about records, and the answer of the records written again (with the service's
        answer of ``ops``, if any, again after them)."""
        names = {m.name_of(op, i): op for i, op in enumerate(ops)}
        rest: list[dict[str, Any]] = []
        retry: list[m.Op] = []
        for error in errors:
            op = names.get(str((error.get("path") or [""])[0]))
            if (
                op is None
                or not op.alias.endswith("_record")
                or "unique" not in str(error.get("message", ""))
            ):
                rest.append(error)
                continue
            resource = str(op.data["resource"]["value"])
            found = nodes(await self._gql(q.RESERVATION, {"resource": resource}), RESERVATION)
            holder = found[0] if found else {}
            claimed_on = value(holder, "claimed_on")
            if holder and claimed_on not in (None, MAIN) and not await self._branch_exists(str(claimed_on)):
                await self._write([m.delete(RESERVATION, holder["id"])], MAIN, missing_ok=True)
                retry.append(op)
                continue
            raise ServiceConflict(
                f"{resource.split(':', 1)[0]} {resource.split(':', 1)[1]}, handed to {identifier} by its pool, is "
                f"still recorded for {value(holder, 'service_identifier')} (claimed on {claimed_on}, "
                f"released on {value(holder, 'released_on')}): a release under review elsewhere; try again once "
                "it is concluded"
            )
        data: dict[str, Any] = {}
        if retry:
            data, again = await self._send([*retry, *(op for op in ops if op.alias == ANSWER)], branch)
            rest += again
        return rest, data

    async def _branch_exists(self, name: str) -> bool:
        return bool((await self._gql(q.BRANCH, {"name": name})).get("Branch"))

    async def _held_by(self, identifier: str, resource: str) -> bool:
        found = nodes(await self._gql(q.RESERVATION, {"resource": resource}), RESERVATION)
        return bool(found) and value(found[0], "service_identifier") == identifier

    async def _written(
        self, identifier: str, changes: Changes, branch: str, site: Site | None
    ) -> Implementation:
        """Finish a step whose first write lost a race it can ignore: read what is there, write the rest."""
        read = await self._require(identifier, branch)
        assert read.node is not None
        held_vlan = peer(read.node, "vlan") is not None
        held_prefix = peer(read.node, "prefix") is not None
        rest = changes.model_copy(
            update={
                "release": frozenset(),
                "vlan": None if held_vlan else changes.vlan,
                "prefix": None if held_prefix else changes.prefix,
            }
        )
        return await self._apply(identifier, rest, branch, read, site)

    def _implementation(self, before: Implementation, changes: Changes, held: _Held) -> Implementation:
        vlan, prefix = held.vlan, held.prefix
        port = None
        if held.port is not None and vlan is not None:
            port = PortAssignment(port=held.port, vlan_id=vlan.vlan_id)
        gateway = None if "gateway" in changes.release else before.gateway
        if changes.gateway is not None and vlan is not None and prefix is not None:
            gateway = Gateway(
                device=changes.gateway,
                interface=policy.gateway_interface_name(vlan.vlan_id),
                address=policy.gateway_address(prefix),
                vlan_id=vlan.vlan_id,
            )
        return Implementation(vlan=vlan, prefix=prefix, port=port, gateway=gateway)

    # ------------------------------------------------------------------ one resource at a time
    async def ensure_vlan(self, service: str, *, pool: str, l2domain: str, branch: str) -> Vlan:
        changes = Changes(vlan=VlanRequest(pool=pool, l2domain=l2domain))
        vlan = (await self.apply_changes(service, changes, branch=branch)).vlan
        assert vlan is not None
        return vlan

    async def ensure_prefix(
        self, service: str, *, pool: str, length: int, vlan: Vlan, branch: str
    ) -> IPv4Network:
        changes = Changes(prefix=PrefixRequest(pool=pool, length=length))
        prefix = (await self.apply_changes(service, changes, branch=branch)).prefix
        assert prefix is not None
        return prefix

    async def claim_port(self, service: str, *, port: Port, vlan: Vlan, branch: str) -> PortAssignment:
        assignment = (await self.apply_changes(service, Changes(port=port), branch=branch)).port
        assert assignment is not None
        return assignment

    async def ensure_gateway(
        self, service: str, *, device: str, vlan: Vlan, address: IPv4Interface, branch: str
    ) -> Gateway:
        left = await self._last_or_read(service, branch)
        current = to_implementation(left.read.node or {}).gateway
        wanted = Gateway(
            device=device,
            interface=policy.gateway_interface_name(vlan.vlan_id),
            address=address,
            vlan_id=vlan.vlan_id,
        )
        if current == wanted:
            return wanted
        try:
            changes = Changes(gateway=device)
            gateway = (await self._apply(service, changes, branch, left.read, None, left.view)).gateway
        except GraphQLError as error:
            if "uniqueness constraint" not in str(error):
                raise
            # An earlier attempt's write landed after we stopped waiting for it (a retried timeout):
            # read again and add only what is still missing.
            read = await self._require(service, branch)
            if to_implementation(read.node or {}).gateway == wanted:
                return wanted
            gateway = (await self._apply(service, Changes(gateway=device), branch, read, None)).gateway
        assert gateway is not None
        return gateway

    async def release_vlan(self, service: str, *, branch: str) -> None:
        await self.apply_changes(service, Changes(release=frozenset({"vlan"})), branch=branch)

    async def release_prefix(self, service: str, *, branch: str) -> None:
        await self.apply_changes(service, Changes(release=frozenset({"prefix"})), branch=branch)

    async def release_port(self, service: str, *, branch: str) -> None:
        await self.apply_changes(service, Changes(release=frozenset({"port"})), branch=branch)

    async def release_gateway(self, service: str, *, branch: str) -> None:
        await self.apply_changes(service, Changes(release=frozenset({"gateway"})), branch=branch)

    async def discard_changes(self, service: str, *, branch: str) -> None:
        if branch == MAIN:
            return
        self._forget(service, branch)
        read, main = await self._require(service, branch), await self._require(service, MAIN)
        node, records, main_node = read.node, read.records, main.node
        assert node is not None and main_node is not None
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
        await self._write(claims + ops, branch, missing_ok=True)

    # ------------------------------------------------------------------ branches and proposed changes
    async def create_branch(self, name: str) -> None:
        if name == MAIN:
            return
        self._forget(branch=name)
        errors = await self._branch_task([m.create_branch(name)])
        if [e for e in errors if "already exist" not in str(e.get("message", "")).lower()]:
            raise GraphQLError(errors=errors)

    async def open_proposed_change(
        self,
        branch: str,
        title: str,
        description: str,
        *,
        known: Sequence[ProposedChange] | None = None,
    ) -> ProposedChange:
        if known is None:
            current = await self._newest_change(branch)
        else:
            current = max((c for c in known if c.branch == branch), key=lambda c: c.id, default=None)
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
        change = to_change(result["CoreProposedChangeCreate"]["object"])
        self._branch_of[change.id] = change.branch
        return change

    async def _newest_change(self, branch: str) -> ProposedChange | None:
        found = nodes(await self._gql(q.PROPOSED_CHANGES, {"branch": branch}), "CoreProposedChange")
        if not found:
            return None
        return to_change(max(found, key=lambda n: str(n["id"])))

    async def get_proposed_change(self, branch: str) -> ProposedChange | None:
        """The newest proposed change of a branch; a merged one is finished first (one read with what
        its merge left to do, and one write only if something is left)."""
        if branch in self._finished:
            return await self._newest_change(branch)
        data = await self._gql(q.CHANGE_AND_PENDING, {"branch": branch})
        found = nodes(data, "CoreProposedChange")
        if not found:
            return None
        change = to_change(max(found, key=lambda n: str(n["id"])))
        self._branch_of[change.id] = change.branch
        if change.state is ChangeState.MERGED:
            # A read-only account that looks first may not write: the next account allowed to finishes it.
            with contextlib.suppress(PermissionDenied):
                await self._finish_merge(branch, data)
        return change

    async def _change_node(self, change_id: str) -> dict[str, Any]:
        found = nodes(await self._gql(q.PROPOSED_CHANGE, {"id": change_id}), "CoreProposedChange")
        if not found:
            raise ServiceConflict(f"no proposed change {change_id!r}")
        self._branch_of[change_id] = str(value(found[0], "source_branch"))
        return found[0]

    async def merge_proposed_change(self, change_id: str, *, by: str | None = None) -> ProposedChange:
        """Merge as the architect would, once the change's checks allow it.

        First the checks themselves, here (``review``): a change they refuse is refused at once, with
        their messages. Then Infrahub's own pipeline: wait until every check a registered repository
        declares has run since the change's plan was last recorded, and every other validator has
        finished; a failed one refuses the merge with its messages (each refused merge would be a task
        of its own on Infrahub's task manager, so none is sent while the pipeline runs). Then the
        merge, through the state update Infrahub checks against the account's
        ``merge_proposed_change`` permission (Infrahub 1.11's ``CoreProposedChangeMerge`` mutation does
        not check it: any account that may edit main could merge). The request waits for Infrahub's
        merge task, and the change is read back with what its merge leaves to finish. Infrahub puts a
        change it refused back to ``open``: the reason is read from the validators again, and the merge
        sent again until ``merge_timeout``."""
        deadline = time.monotonic() + self.merge_timeout
        delay = 2.0
        refused = ""
        judged = False
        node, pending = await self._merge_state(change_id)
        while True:
            state = str(value(node, "state"))
            if state == "merged":
                change = to_change(node)
                await self._finish_merge(change.branch, pending)
                return change
            if state in ("closed", "canceled"):
                raise ServiceConflict(f"proposed change {change_id} is {state} and cannot be merged")
            if time.monotonic() > deadline:
                raise ServiceConflict(
                    f"proposed change {change_id} could not be merged within {self.merge_timeout:.0f}s "
                    f"(still {state}: its checks failed or are still running; Infrahub: {refused or '-'})"
                )
            if state == "open":
                branch = str(value(node, "source_branch"))
                if not judged:
                    found = await self.review(branch)
                    if found.violations:
                        raise checks.refusal(change_id, branch, [v.message for v in found.violations])
                    judged = True
                # Waits for the pipeline; after a refusal, reads why (a check that failed meanwhile).
                await self._pipeline_passed(change_id, branch, deadline)
                try:
                    await self._gql(q.MERGE_PROPOSED_CHANGE, {"id": change_id}, timeout=self.merge_timeout)
                except GraphQLError as exc:  # refused, or merged or closed meanwhile: the state says which
                    if "not allowed to merge" in messages(exc).lower():
                        raise PermissionDenied(f"Infrahub refused: {messages(exc)}") from exc
                    refused = messages(exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 1.5, 10.0)
                except Busy:  # the merge task outlasted the request: it goes on
                    if time.monotonic() > deadline:
                        raise
            else:  # merging
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 10.0)
            node, pending = await self._merge_state(change_id)

    async def _merge_state(self, change_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The change and, when its branch is known, what a merge leaves to do."""
        branch = self._branch_of.get(change_id)
        if branch is None:
            found = nodes(await self._gql(q.MERGE_STATE_BY_ID, {"id": change_id}), "CoreProposedChange")
            if not found:
                raise ServiceConflict(f"no proposed change {change_id!r}")
            self._branch_of[change_id] = str(value(found[0], "source_branch"))
            return found[0], None
        data = await self._gql(q.MERGE_STATE, {"id": change_id, "branch": branch})
        found = nodes(data, "CoreProposedChange")
        if not found:
            raise ServiceConflict(f"no proposed change {change_id!r}")
        return found[0], data

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
        validator): the pipeline is asked to run again, once, as an architect does in the UI. A change
        opened less than ``PIPELINE_START_SECONDS`` ago with no validator yet is still starting it.

        The branch was judged here just before (``review``) and passed: a repository check that failed
        ran on an older branch (one a re-open brought back to its plan, or an architect repaired), so
        the checks are asked for again, once, and only a run that started after the failed one
        counts. Infrahub runs its pipeline when a change is opened or asked to, never when the branch
        changes."""
        delay = 1.0
        rerun = False
        stale: datetime | None = None  # the start of the newest failed check run on an older branch
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
            validators = peers(found[0], "validations")
            opened = created_at(change_id)
            if not validators and opened is not None and _age(opened) < PIPELINE_START_SECONDS:
                pending["pipeline"] = "the pipeline, starting"  # no validator yet on a change this young
            failed: list[str] = []
            outdated: list[datetime] = []
            for validator in validators:
                label = str(validator.get("display_label"))
                definition = (peer(validator, "check_definition") or {}).get("id")
                if definition in definitions:
                    started = _when(value(validator, "started_at"))
                    if since is not None and (started is None or started < since):
                        continue  # ran for an earlier plan: still pending
                    if stale is not None and (started is None or started <= stale):
                        continue  # ran on the branch before it was repaired: still pending
                    failing = (
                        value(validator, "state") == "completed"
                        and value(validator, "conclusion") != "success"
                    )
                    if failing and stale is None and started is not None:
                        outdated.append(started)
                        continue
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
            if outdated:
                stale = max(outdated)
                await self._gql(q.RUN_CHECKS, {"id": change_id})
                continue
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
        change = to_change(await self._change_node(change_id))
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

    async def _finish_merge(self, branch: str, pending: dict[str, Any] | None = None) -> None:
        """What a merge leaves to do on main: claims made on the branch become main's, what was
        released there is given back (reservations deleted, deferred VLANs deleted), and the branch
        is deleted. One write, with what ``pending`` (``CHANGE_AND_PENDING`` read after the merge)
        found."""
        if branch in self._finished:
            return
        self._forget(branch=branch)
        if pending is None:
            pending = await self._gql(q.CHANGE_AND_PENDING, {"branch": branch})
        ops = _pending_ops(pending)
        # A merged branch keeps its own copy of what it created, and both pools read every branch:
        # while the branch lives, a VLAN ID or prefix it allocated stays taken even after main deletes
        # it. Its proposed changes stay (merged) for the record.
        exists = branch != MAIN and bool(pending.get("Branch"))
        # Only a branch whose merge gave something back has to be gone before the pools see it free:
        # that deletion is waited for. A delivery's branch is deleted in the background (seconds of
        # Infrahub's task time nobody needs to wait for).
        gave_back = bool(
            nodes(pending, "released") or nodes(pending, "IpamVLAN") or nodes(pending, "IpamPrefix")
        )
        if exists:
            ops.append(m.delete_branch(branch, wait=gave_back))
        # Several parties may conclude one merged change at once (the flow, the architect's CLI,
        # reconciliation, an event, the generator): each finds the same work pending, and what
        # another one did first counts as done, so the outcome is the same as finishing once.
        errors = await self._branch_task(ops) if exists else (await self._send(ops, MAIN))[1]
        unexpected = [
            e
            for e in errors
            if not _node_missing(e)
            and not _branch_gone(e)
            and not (exists and not gave_back and _on_branch_delete(e))
        ]
        if [e for e in unexpected if (e.get("path") or [""])[0] != "branch_delete"]:
            # Infrahub does not always say "not found" when a concurrent party deleted the node first
            # (seen: an internal error, "'NoneType' object has no attribute 'has_changelog'"): read
            # again, and what is still left is what failed.
            left = _pending_ops(await self._gql(q.CHANGE_AND_PENDING, {"branch": branch}))
            if left:
                _, errors = await self._send(left, MAIN)
                if [e for e in errors if not _node_missing(e)]:
                    raise GraphQLError(errors=unexpected)
        if [e for e in unexpected if (e.get("path") or [""])[0] == "branch_delete"]:
            await self._wait_branch_gone(branch, unexpected)
        self._finished.add(branch)

    async def _wait_branch_gone(self, branch: str, errors: list[dict[str, Any]]) -> None:
        """A concurrent deletion of the same branch, or one that outlasted the request: wait for the
        branch to be gone (raises if Infrahub is down or the branch stays)."""
        deadline = time.monotonic() + self.merge_timeout
        while (await self._gql(q.BRANCH, {"name": branch})).get("Branch"):
            if time.monotonic() > deadline:
                raise GraphQLError(errors=errors)
            await asyncio.sleep(2.0)


def _pending_ops(pending: dict[str, Any]) -> list[m.Op]:
    """What a merge leaves to do on main, from ``CHANGE_AND_PENDING``: claims made on the branch become
    main's, reservations released there go, and so do the VLANs and prefixes set aside there."""
    ops = [
        m.update(RESERVATION, {"id": n["id"], "claimed_on": m.attr(MAIN)}) for n in nodes(pending, "claimed")
    ]
    ops += [m.delete(RESERVATION, n["id"]) for n in nodes(pending, "released")]
    ops += [m.delete("IpamVLAN", n["id"]) for n in nodes(pending, "IpamVLAN")]
    ops += [m.delete("IpamPrefix", n["id"]) for n in nodes(pending, "IpamPrefix")]
    return ops


def _node_missing(error: dict[str, Any]) -> bool:
    """A GraphQL error saying the node a mutation targets does not exist (any more)."""
    code = str((error.get("extensions") or {}).get("code", ""))
    return code == "NODE_NOT_FOUND" or "unable to find the node" in str(error.get("message", "")).lower()


def _busy(error: dict[str, Any]) -> bool:
    """Infrahub could not hand a task to its task manager (overloaded): transient."""
    text = str(error.get("message", ""))
    return "Service Unavailable" in text or "Failed to submit flow run" in text


def _on_branch_delete(error: dict[str, Any]) -> bool:
    return bool((error.get("path") or [""])[0] == "branch_delete")


def _branch_gone(error: dict[str, Any]) -> bool:
    text = str(error.get("message", "")).lower()
    return (error.get("path") or [""])[0] == "branch_delete" and "not found" in text


def _service_update(
    identifier: str, status: ServiceStatus | None, bandwidth: Bandwidth | None, ip_package: IpPackage | None
) -> m.Op | None:
    data: dict[str, Any] = {"hfid": [identifier]}
    for name, new in (("status", status), ("bandwidth", bandwidth), ("ip_package", ip_package)):
        if new is not None:
            data[name] = m.attr(new.value)
    return m.update(SERVICE, data) if len(data) > 1 else None


def _answer(service_id: str) -> m.Op:
    """The last mutation of a step's write: an update of the service that changes nothing (no diff, no
    event) and returns it as ``queries.SERVICE`` reads it, after the document's other mutations ran.
    Only the id: Infrahub 1.11 answers an update that names an attribute without the service's
    location, VLAN and prefix (a relationship it did not save is not loaded)."""
    return m.Op(
        f"{SERVICE}Update", f"{SERVICE}UpdateInput", {"id": service_id}, q.SERVICE_ANSWER, alias=ANSWER
    )


def _answered(data: dict[str, Any]) -> dict[str, Any] | None:
    found = (data.get(ANSWER) or {}).get("object")
    return found if isinstance(found, dict) else None


def _only_releases(changes: Changes) -> bool:
    return all(v is None for v in (changes.vlan, changes.prefix, changes.port, changes.gateway))


def _records_after(records: list[dict[str, Any]], ops: Sequence[m.Op]) -> list[dict[str, Any]]:
    """The service's reservations once ``ops`` (a write's mutations, all of which succeeded) ran on
    ``records``: as ``queries.SERVICE`` would read them, without the read."""
    found = {str(r["id"]): r for r in records}
    for op in ops:
        key = str(op.data.get("id"))
        if op.mutation == f"{RESERVATION}Create":
            found[key] = {"id": key} | {n: op.data.get(n, m.attr(None)) for n in q.RESERVATION_ATTRIBUTES}
        elif op.mutation == f"{RESERVATION}Update" and key in found:
            found[key] = found[key] | {n: v for n, v in op.data.items() if n in q.RESERVATION_ATTRIBUTES}
        elif op.mutation == f"{RESERVATION}Delete":
            found.pop(key, None)
    return list(found.values())


def _room(
    shortname: str, numbers: dict[str, Any], prefixes: dict[str, Any], data: dict[str, Any]
) -> dict[str, int]:
    """What each pool that may serve the site has left, from the reservation counts of the step's read
    (``queries.view(held=True)``): VLAN IDs of a number pool, addresses of a prefix pool."""
    room: dict[str, int] = {}
    for where, pool in (("site", f"{policy.VLAN_POOL} {shortname}"), ("global", policy.VLAN_POOL)):
        if pool in numbers:
            size = int(value(numbers[pool], "end_range")) - int(value(numbers[pool], "start_range")) + 1
            room[pool] = size - int((data.get(f"vlans_{where}") or {}).get("count") or 0)
    for where, pool in (("site", f"{policy.PREFIX_POOL} {shortname}"), ("global", policy.PREFIX_POOL)):
        if pool in prefixes:
            size = sum(
                IPv4Network(value(r, "prefix")).num_addresses for r in peers(prefixes[pool], "resources")
            )
            used = sum(
                block * int((data.get(f"prefixes_{where}_{block}") or {}).get("count") or 0)
                for block in q.PREFIX_SIZES
            )
            room[pool] = size - used
    return room


def _view_after(view: PlanningView, read: _Read, ops: Sequence[m.Op]) -> PlanningView:
    """``view`` once a write decided from it returned ``read``: the service as returned, and what the
    write's new reservations took from the site's candidate ports, switch load and pool room (what it
    gave back shows at the next read)."""
    assert read.node is not None
    free, load = list(view.free_ports), dict(view.switch_load)
    room = dict(view.room) if view.room is not None else None
    for op in ops if read.complete else ():
        if op.mutation != f"{RESERVATION}Create":
            continue
        kind, pool = value(op.data, "kind"), value(op.data, "pool")
        if kind == "port":
            free = [p for p in free if _port_resource(p.id) != value(op.data, "resource")]
            index = int(value(op.data, "device_index") or 0)
            load[index] = load.get(index, 0) + 1
        elif room is not None and pool in room:
            room[pool] -= 1 if kind == "vlan" else int(value(op.data, "size") or 0)
    return view.model_copy(
        update={
            "service": to_service(read.node),
            "free_ports": tuple(free),
            "switch_load": load,
            "room": room,
            "handle": read,
        }
    )


def _vlan(node: dict[str, Any]) -> Vlan:
    return Vlan(
        vlan_id=int(value(node, "vlan_id")),
        name=str(value(node, "name")),
        l2domain=str(value(peer(node, "l2domain"), "name")),
    )


def _create_vlan(identifier: str, node_id: str, request: VlanRequest, service_id: str) -> m.Op:
    return m.create(
        "IpamVLAN",
        {
            "id": node_id,
            "name": m.attr(policy.vlan_name(identifier)),
            # The pool by name: Infrahub resolves it, so the write needs no lookup first.
            "vlan_id": {"from_pool": {"id": request.pool}},
            "l2domain": m.hfid(request.l2domain),
            "role": m.attr(policy.CUSTOMER_ROLE),
            "status": m.attr("active"),
            "description": m.attr(f"Customer VLAN of {identifier}"),
            "service": m.ref(service_id),
        },
        selection="ok object { id vlan_id { value } }",
        alias="vlan",
    )


def _allocate_prefix(identifier: str, pool: str, length: int, held: _Held) -> m.Op:
    assert held.vlan_id is not None
    return m.prefix_from_pool(
        {
            "id": pool,
            "identifier": policy.allocation_key(identifier, "prefix", length),
            "prefix_length": length,
            "data": {
                "role": m.attr(policy.CUSTOMER_ROLE),
                "status": m.attr("active"),
                "description": m.attr(f"Customer prefix of {identifier}"),
                "service": m.ref(held.service_id),
                "vlan": m.ref(held.vlan_id),
            },
        },
        alias="prefix",
    )


def _claim(identifier: str, port: Port, records: list[dict[str, Any]], branch: str, site: str) -> list[m.Op]:
    """Claim ``port`` for every branch (a unique reservation), unless the service holds it already."""
    record = _record(records, _port_resource(port.id))
    if record is None:
        reserve = _reserve(
            identifier, _port_resource(port.id), "port", branch, site=site, device_index=port.device_index
        )
        return [m.Op(reserve.mutation, reserve.input_type, reserve.data, "ok", alias="claim")]
    if value(record, "released_on") == branch:  # claimed again on the branch that released it
        return [m.update(RESERVATION, {"id": record["id"], "released_on": m.attr(None)})]
    return []


def _forget_unconfigured_claims(
    records: list[dict[str, Any]], branch: str, port: Port, l2s: list[dict[str, Any]]
) -> list[m.Op]:
    """Port claims this branch made for a port it never configured (a step interrupted between its two
    writes) and no longer wants: given back."""
    configured = {_port_resource(_key(i)) for i in l2s}
    return [
        m.delete(RESERVATION, r["id"])
        for r in records
        if value(r, "kind") == "port"
        and value(r, "claimed_on") == branch
        and value(r, "resource") not in configured
        and value(r, "resource") != _port_resource(port.id)
    ]


def _reserve(
    identifier: str, resource: str, kind: str, branch: str, *, alias: str = "", **extra: str | int | None
) -> m.Op:
    """Record ``resource`` as held by ``identifier`` for every branch: reservations are
    branch-agnostic and unique, so the create fails if another service holds it."""
    data = {
        "id": str(uuid.uuid4()),  # chosen here: the service's reservations after a write need no read
        "resource": m.attr(resource),
        "kind": m.attr(kind),
        "service_identifier": m.attr(identifier),
        "claimed_on": m.attr(branch),
        **{name: m.attr(v) for name, v in extra.items() if v is not None},
    }
    return m.create(RESERVATION, data, alias=alias)


def _gateway(
    identifier: str, device: str, vlan: Vlan, held: _Held, prefix: IPv4Network, l3s: list[dict[str, Any]]
) -> list[m.Op]:
    """The gateway: an L3 interface named for the VLAN on the router, linked to it, with the first
    usable host of the prefix; completes one left half-built."""
    assert held.vlan_id is not None and held.prefix_id is not None
    name = policy.gateway_interface_name(vlan.vlan_id)
    address = policy.gateway_address(prefix)
    existing = next(
        (i for i in l3s if value(i, "name") == name and value(peer(i, "device"), "name") == device), None
    )
    ops: list[m.Op] = []
    interface_id = str(existing["id"]) if existing else str(uuid.uuid4())
    if existing is None:
        ops.append(
            m.create(
                "DcimInterfaceL3",
                {
                    "id": interface_id,
                    "name": m.attr(name),
                    "device": m.hfid(device),
                    "role": m.attr(policy.CUSTOMER_ROLE),
                    "status": m.attr("active"),
                    "enabled": m.attr(True),
                    "description": m.attr(f"Gateway of {identifier}"),
                    "vlan": m.ref(held.vlan_id),
                    "service": m.ref(held.service_id),
                },
            )
        )
    elif peer(existing, "vlan") is None:
        ops.append(m.update("DcimInterfaceL3", {"id": interface_id, "vlan": m.ref(held.vlan_id)}))
    addresses = peers(existing, "ip_addresses") if existing else []
    present = next((a for a in addresses if IPv4Interface(value(a, "address")) == address), None)
    address_id = str(present["id"]) if present else str(uuid.uuid4())
    if present is None:
        ops.append(
            m.create(
                "IpamIPAddress",
                {
                    "id": address_id,
                    "address": m.attr(str(address)),
                    "interface": m.ref(interface_id),
                    "description": m.attr(f"Gateway of {identifier}"),
                    "service": m.ref(held.service_id),
                },
            )
        )
    ops.append(m.update("IpamPrefix", {"id": held.prefix_id, "gateway": m.ref(address_id)}))
    held.gateway_ids = (interface_id, address_id)
    return ops


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


def _port_resource(port_id: str) -> str:
    return f"port:{port_id}"


def _prefix_resource(prefix: IPv4Network) -> str:
    return f"prefix:{prefix}"


def _vlan_resource(vlan: Vlan) -> str:
    return f"vlan:{vlan.l2domain}:{vlan.vlan_id}"


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
