"""The inventory port: everything the core asks of a source of truth.

Shaped after what infrahub-sdk offers (branches, resource pools allocated by identifier, nodes
created and updated on a branch, proposed changes), so that the Infrahub backend is a thin
translation and the embedded backend mirrors only the semantics the core relies on:

- service identity (identifier, account, site) is branch-agnostic; status, bandwidth and package
  are branch-aware, so ``active`` reaches main only with the merge;
- pool reservations and port claims are global: a resource taken on any branch is taken for all;
- every ``ensure_*``/``claim_*`` is idempotent for one service and role;
- ``release_*`` on a branch deletes the object there; what it held returns to its pool when the
  deletion reaches main (merge), or at once if the object never existed on main;
- ``discard_changes`` puts a service's objects on a branch back to what main has, returning what
  the branch took: the compensation of a rejected change.

A step reads once and writes once: ``planning_view`` returns everything a step decides from (the
service on the branch, its site's candidate ports, switch load and pool room, the proposed changes
of its branches), ``apply_changes`` carries out every release and allocation the core decided from
it, ``branch_off`` starts a transition. The finer calls (``get_service``, ``free_ports``,
``ensure_vlan``, ``release_port``, ...) stay for callers that need one thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Interface, IPv4Network
from typing import Protocol, runtime_checkable

from allocation.intent import Bandwidth, IpPackage, ServiceRequest, ServiceStatus
from allocation.model import (
    Changes,
    Gateway,
    Implementation,
    PlanningView,
    PoolUsage,
    Port,
    PortAssignment,
    PortUsage,
    ProposedChange,
    Service,
    Site,
    Vlan,
)


@runtime_checkable
class Inventory(Protocol):
    # services
    async def get_service(self, identifier: str, branch: str) -> Service | None: ...

    async def list_services(
        self,
        branch: str,
        *,
        status: ServiceStatus | None = None,
        site: str | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Service]:
        """Services as ``branch`` sees them, ordered by identifier; only those with the status (on
        that branch) and at the site when given; ``limit`` of them from ``offset`` (all by default)."""
        ...

    async def count_services(
        self, branch: str, *, status: ServiceStatus | None = None, site: str | None = None
    ) -> int:
        """How many services ``list_services`` with the same filters returns without a limit."""
        ...

    async def create_service(self, request: ServiceRequest, *, requested_by: str | None = None) -> Service:
        """Record a draft service on main, with the account that asked for it. Idempotent for the
        same request; raises ServiceConflict when the identifier exists with another account or site."""
        ...

    async def withdraw_service(self, identifier: str) -> None:
        """Remove a draft that never reached review, with what its delivery branch holds: what a
        request refused during its delivery leaves behind. Raises ServiceConflict for a service that
        is not a draft or has a proposed change."""
        ...

    async def update_service(
        self,
        identifier: str,
        branch: str,
        *,
        status: ServiceStatus | None = None,
        bandwidth: Bandwidth | None = None,
        ip_package: IpPackage | None = None,
    ) -> None: ...

    async def planning_view(
        self, identifier: str, branch: str, *, site: str | None = None, allocating: bool = True
    ) -> PlanningView:
        """One read of what a step decides from (see ``PlanningView``). ``site`` is the service's site
        when the caller knows it (a service not recorded yet); otherwise the service's own. With
        ``allocating=False`` a backend may leave out the candidate ports, switch load and pool room.
        Raises UnknownSite, and UnknownService when ``site`` is None and the service is not recorded."""
        ...

    async def apply_changes(
        self, identifier: str, changes: Changes, *, branch: str, view: PlanningView | None = None
    ) -> Implementation:
        """Carry out ``changes`` (see ``Changes``) for the service on ``branch`` and return what it then
        holds there. ``view`` is the planning view the changes were decided from, if the caller has one:
        the backend may write from what it read instead of reading again. Idempotent: what the service
        already holds is kept. Also completes what an interrupted earlier call left half-done, so it
        may write even when ``changes`` is empty. Raises PortTaken when another service holds
        ``changes.port`` and PoolExhausted when a pool has no room; what else the call did may stay
        (running it again finishes it)."""
        ...

    async def branch_off(
        self,
        identifier: str,
        branch: str,
        *,
        status: ServiceStatus | None = None,
        bandwidth: Bandwidth | None = None,
        ip_package: IpPackage | None = None,
    ) -> None:
        """Start a transition: set the service's ``status`` on main (when given), then create ``branch``
        from main (idempotent), then set ``bandwidth`` and ``ip_package`` on the branch (when given).
        Main is written first, so the branch never conflicts with main on the status."""
        ...

    # topology
    async def list_sites(self) -> list[str]:
        """Short names of every site, sorted."""
        ...

    async def get_site(self, shortname: str) -> Site:
        """Raises UnknownSite."""
        ...

    async def free_ports(self, site: str, min_speed_mbps: int) -> list[Port]:
        """Customer ports of the site's core switches that no service holds on any branch.

        A backend may return only the first free port (natural name order) of each switch and
        speed: the port policy never picks another, and a site can have hundreds of ports."""
        ...

    async def switch_load(self, site: str) -> dict[int, int]:
        """Customer ports held per core switch index at a site."""
        ...

    # pools
    async def pool_has_room(self, pool: str, prefix_length: int | None = None) -> bool:
        """Whether one more VLAN ID (number pool) or prefix of this length (prefix pool) is free."""
        ...

    async def pool_usage(self) -> list[PoolUsage]: ...

    async def port_usage(self) -> list[PortUsage]: ...

    # implementation objects
    async def ensure_vlan(self, service: str, *, pool: str, l2domain: str, branch: str) -> Vlan: ...

    async def ensure_prefix(
        self, service: str, *, pool: str, length: int, vlan: Vlan, branch: str
    ) -> IPv4Network: ...

    async def claim_port(self, service: str, *, port: Port, vlan: Vlan, branch: str) -> PortAssignment:
        """Raises PortTaken when another service holds the port."""
        ...

    async def ensure_gateway(
        self, service: str, *, device: str, vlan: Vlan, address: IPv4Interface, branch: str
    ) -> Gateway: ...

    async def release_vlan(self, service: str, *, branch: str) -> None: ...

    async def release_prefix(self, service: str, *, branch: str) -> None: ...

    async def release_port(self, service: str, *, branch: str) -> None: ...

    async def release_gateway(self, service: str, *, branch: str) -> None: ...

    async def discard_changes(self, service: str, *, branch: str) -> None: ...

    # review
    async def create_branch(self, name: str) -> None:
        """Idempotent."""
        ...

    async def open_proposed_change(
        self,
        branch: str,
        title: str,
        description: str,
        *,
        known: Sequence[ProposedChange] | None = None,
    ) -> ProposedChange:
        """Reuses the open proposed change of the branch if there is one. ``known``: the proposed
        changes of the branch as the caller just read them (a planning view's), so the backend need
        not read them again."""
        ...

    async def get_proposed_change(self, branch: str) -> ProposedChange | None:
        """The newest proposed change of a branch."""
        ...

    async def merge_proposed_change(self, change_id: str, *, by: str | None = None) -> ProposedChange:
        """Merge; the change records who decided (``by`` where the backend cannot tell: Infrahub
        records the account whose credentials made the call and ignores ``by``)."""
        ...

    async def close_proposed_change(self, change_id: str, *, by: str | None = None) -> ProposedChange: ...

    # reconciliation
    async def leaks(self) -> list[str]:
        """Resources held for a service that no object on any branch holds any more."""
        ...

    async def close(self) -> None: ...
