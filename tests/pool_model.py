"""A plain reference model of the resource pools, and a state machine that checks a backend against it.

The model is a set of held ranges and nothing else: what is free is recomputed from scratch after
every step. A number pool hands out its lowest free number. A prefix pool hands out an aligned block
that lies inside one of its resources (Infrahub allocates within one resource); the embedded buddy
allocator takes the smallest free aligned block that fits, lowest address first, and keeps the
lower half when it splits. Its free list must always be the maximal free aligned blocks of each
resource: that is "fragmentation merges back".
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Literal

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from allocation.errors import PoolExhausted, ServiceConflict
from allocation.inventory import Inventory
from allocation.model import MAIN, Vlan

# --------------------------------------------------------------------------------------- the model


def free_numbers(lo: int, hi: int, held: Collection[int]) -> list[int]:
    return [n for n in range(lo, hi + 1) if n not in held]


def free_intervals(lo: int, hi: int, held: Collection[int]) -> list[tuple[int, int]]:
    """The free numbers as maximal runs, lowest first."""
    runs: list[tuple[int, int]] = []
    for n in free_numbers(lo, hi, held):
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def free_blocks(resources: Iterable[IPv4Network], held: Collection[IPv4Network]) -> list[IPv4Network]:
    """The maximal free aligned blocks of each resource."""

    def split(block: IPv4Network) -> list[IPv4Network]:
        if not any(block.overlaps(h) for h in held):
            return [block]
        if any(block.subnet_of(h) for h in held):
            return []
        low, high = block.subnets(prefixlen_diff=1)
        return split(low) + split(high)

    return sorted((b for r in resources for b in split(r)), key=lambda b: (b.prefixlen, b.network_address))


def room_for(resources: Iterable[IPv4Network], held: Collection[IPv4Network], length: int) -> bool:
    return any(b.prefixlen <= length for b in free_blocks(resources, held))


def best_fit(
    resources: Iterable[IPv4Network], held: Collection[IPv4Network], length: int
) -> IPv4Network | None:
    """The block the buddy allocator hands out: the lowest address of the smallest free block that fits."""
    fitting = [b for b in free_blocks(resources, held) if b.prefixlen <= length]
    if not fitting:
        return None
    block = min(fitting, key=lambda b: (-b.prefixlen, b.network_address))
    return IPv4Network((block.network_address, length))


def assert_disjoint(prefixes: Iterable[IPv4Network]) -> None:
    for a, b in itertools.combinations(prefixes, 2):
        assert not a.overlaps(b), f"{a} and {b} are held at once"


# ------------------------------------------------------------------ the pools behind the inventory port

Role = Literal["vlan", "prefix"]
Value = int | IPv4Network


@dataclass
class Deleted:
    """Released on the branch while main still holds it: held until the merge."""


@dataclass
class Held:
    """What one service holds, for one role, on main and on the branch."""

    main: Value | None = None
    branch: Value | Deleted | None = None  # None: the branch shows main's

    def on(self, where: str) -> Value | None:
        if where == MAIN or self.branch is None:
            return self.main
        return None if isinstance(self.branch, Deleted) else self.branch

    def values(self) -> set[Value]:
        return {v for v in (self.main, self.branch) if v is not None and not isinstance(v, Deleted)}


@dataclass
class PortModel:
    """The port's semantics (allocation/inventory.py) for one VLAN pool and one prefix pool:
    a release on a branch gives the resource back when the deletion reaches main, or at once if main
    never had it; discarding a branch gives back what the branch took and takes back its releases."""

    lo: int
    hi: int
    resources: tuple[IPv4Network, ...]
    held: dict[tuple[str, Role], Held] = field(default_factory=dict)

    def slot(self, service: str, role: Role) -> Held:
        return self.held.setdefault((service, role), Held())

    def vlans(self) -> list[int]:
        return [v for (_, role), h in self.held.items() if role == "vlan" for v in h.values()]  # type: ignore[misc]

    def prefixes(self) -> list[IPv4Network]:
        return [v for (_, role), h in self.held.items() if role == "prefix" for v in h.values()]  # type: ignore[misc]

    def next_vlan(self) -> int | None:
        free = free_numbers(self.lo, self.hi, set(self.vlans()))
        return free[0] if free else None

    def next_prefix(self, length: int) -> IPv4Network | None:
        return best_fit(self.resources, self.prefixes(), length)

    def prefix_room(self, length: int) -> bool:
        return room_for(self.resources, self.prefixes(), length)

    def allocated(self, service: str, role: Role, where: str, value: Value) -> None:
        slot = self.slot(service, role)
        if where == MAIN:
            slot.main = value
        else:
            slot.branch = value

    def taken_back(self, service: str, role: Role, where: str, length: int | None = None) -> Value | None:
        """What an allocation on a branch that released main's resource gets: the same resource (its
        release is taken back) when it is the same allocation (a prefix of the same length)."""
        slot = self.slot(service, role)
        if where == MAIN or not isinstance(slot.branch, Deleted) or slot.main is None:
            return None
        if isinstance(slot.main, IPv4Network) and slot.main.prefixlen != length:
            return None
        return slot.main

    def release(self, service: str, role: Role, where: str) -> None:
        slot = self.slot(service, role)
        if where == MAIN:
            slot.main = None
        else:
            slot.branch = Deleted() if slot.main is not None else None

    def discard(self, service: str) -> None:
        for (name, _), slot in self.held.items():
            if name == service:
                slot.branch = None

    def merge(self) -> None:
        for slot in self.held.values():
            if slot.branch is not None:
                slot.main = None if isinstance(slot.branch, Deleted) else slot.branch
                slot.branch = None


# ----------------------------------------------------------------------------- the state machine


class PortPoolMachine(RuleBasedStateMachine):
    """Random allocate / release / discard / merge sequences through the inventory port, checked
    against PortModel after every step. Subclasses provide the inventory (``self.inventory``), the
    services (created), the branch, the two pools and ``self.run(coroutine)``.

    Calls follow the order the core keeps: a prefix is allocated with the service's VLAN and given
    back before it; allocations on main happen only in the set-up (the core writes main by merging)."""

    # set by subclasses
    inventory: Inventory
    services: tuple[str, ...]
    branch: str
    vlan_pool: str
    prefix_pool: str
    l2domain: str
    lengths: tuple[int, ...]
    exact = True  # the embedded allocator's choice is predicted exactly
    can_merge = True

    model: PortModel

    def run(self, coroutine: object) -> object:
        raise NotImplementedError

    # ---------------------------------------------------------------- steps
    def _vlan(self, service: str, where: str) -> Vlan | None:
        vlan_id = self.model.slot(service, "vlan").on(where)
        if vlan_id is None:
            return None
        assert isinstance(vlan_id, int)
        return Vlan(vlan_id=vlan_id, name=f"vlan__{service}", l2domain=self.l2domain)

    def ensure_vlan(self, service: str, where: str) -> None:
        slot = self.model.slot(service, "vlan")
        current, expected = slot.on(where), self.model.next_vlan()
        taken_back = self.model.taken_back(service, "vlan", where)
        if taken_back is not None:
            got = self.run(
                self.inventory.ensure_vlan(service, pool=self.vlan_pool, l2domain=self.l2domain, branch=where)
            )
            assert isinstance(got, Vlan) and got.vlan_id == taken_back, "a released VLAN is not taken back"
            self.model.allocated(service, "vlan", where, taken_back)
            return
        if current is None and expected is None:
            try:
                self.run(
                    self.inventory.ensure_vlan(
                        service, pool=self.vlan_pool, l2domain=self.l2domain, branch=where
                    )
                )
            except PoolExhausted:
                return
            raise AssertionError(f"a VLAN beyond the pool's {self.model.hi - self.model.lo + 1}")
        got = self.run(
            self.inventory.ensure_vlan(service, pool=self.vlan_pool, l2domain=self.l2domain, branch=where)
        )
        assert isinstance(got, Vlan)
        if current is not None:
            assert got.vlan_id == current, "ensure_vlan is not idempotent"
            return
        assert self.model.lo <= got.vlan_id <= self.model.hi, f"VLAN {got.vlan_id} is outside the pool"
        assert got.vlan_id not in self.model.vlans(), f"VLAN {got.vlan_id} is held twice"
        if self.exact:
            assert got.vlan_id == expected
        self.model.allocated(service, "vlan", where, got.vlan_id)

    def ensure_prefix(self, service: str, where: str, length: int) -> None:
        vlan = self._vlan(service, where)
        assert vlan is not None
        current = self.model.slot(service, "prefix").on(where)
        call = self.inventory.ensure_prefix(
            service, pool=self.prefix_pool, length=length, vlan=vlan, branch=where
        )
        if isinstance(current, IPv4Network) and current.prefixlen != length:
            try:
                self.run(call)
            except ServiceConflict:
                return
            raise AssertionError(f"{service} holds {current} and got a /{length} besides")
        taken_back = self.model.taken_back(service, "prefix", where, length)
        if taken_back is not None:
            got = self.run(call)
            # The embedded backend takes the release back; Infrahub's pool finds the deleted node
            # gone on the branch and allocates anew, which is as correct while nothing is held twice.
            if self.exact or got == taken_back:
                assert got == taken_back, "a released prefix is not taken back"
            else:
                self._check_new_prefix(got, length)
            self.model.allocated(service, "prefix", where, got)  # type: ignore[arg-type]
            return
        if current is None and not self.model.prefix_room(length):
            try:
                self.run(call)
            except PoolExhausted:
                return
            raise AssertionError(f"a /{length} beyond the pool {self.model.resources}")
        got = self.run(call)
        assert isinstance(got, IPv4Network)
        if current is not None:
            assert got == current, "ensure_prefix is not idempotent"
            return
        self._check_new_prefix(got, length)
        self.model.allocated(service, "prefix", where, got)

    def _check_new_prefix(self, got: object, length: int) -> None:
        assert isinstance(got, IPv4Network) and got.prefixlen == length
        assert any(got.subnet_of(r) for r in self.model.resources), f"{got} is outside the pool"
        assert_disjoint([got, *self.model.prefixes()])
        if self.exact:
            assert got == self.model.next_prefix(length)

    def release(self, service: str, role: Role, where: str) -> None:
        call = self.inventory.release_vlan if role == "vlan" else self.inventory.release_prefix
        self.run(call(service, branch=where))
        self.model.release(service, role, where)

    def discard(self, service: str) -> None:
        self.run(self.inventory.discard_changes(service, branch=self.branch))
        self.model.discard(service)

    def merge(self) -> None:
        change = self.run(self.inventory.open_proposed_change(self.branch, "pool model", "merge"))
        self.run(self.inventory.merge_proposed_change(change.id))  # type: ignore[attr-defined]
        self.model.merge()

    # ---------------------------------------------------------------- rules
    @rule(data=st.data())
    def allocate_vlan(self, data: st.DataObject) -> None:
        self.ensure_vlan(data.draw(st.sampled_from(self.services), "service"), self.branch)

    @rule(data=st.data())
    def allocate_prefix(self, data: st.DataObject) -> None:
        candidates = [s for s in self.services if self.model.slot(s, "vlan").on(self.branch) is not None]
        if not candidates:
            return
        service = data.draw(st.sampled_from(candidates), "service")
        self.ensure_prefix(service, self.branch, data.draw(st.sampled_from(self.lengths), "length"))

    @rule(data=st.data())
    def release_prefix(self, data: st.DataObject) -> None:
        self.release(data.draw(st.sampled_from(self.services), "service"), "prefix", self.branch)

    @rule(data=st.data())
    def release_vlan(self, data: st.DataObject) -> None:
        candidates = [s for s in self.services if self.model.slot(s, "prefix").on(self.branch) is None]
        if candidates:
            self.release(data.draw(st.sampled_from(candidates), "service"), "vlan", self.branch)

    @rule(data=st.data())
    def discard_branch(self, data: st.DataObject) -> None:
        self.discard(data.draw(st.sampled_from(self.services), "service"))

    @rule(data=st.data())
    def exhaust(self, data: st.DataObject) -> None:
        """Every service asks for a VLAN and a prefix until the pools say no."""
        length = data.draw(st.sampled_from(self.lengths), "length")
        for service in self.services:
            self.ensure_vlan(service, self.branch)
            if self.model.slot(service, "vlan").on(self.branch) is not None:
                self.ensure_prefix(service, self.branch, length)

    @precondition(lambda self: self.can_merge)
    @rule()
    def merge_branch(self) -> None:
        self.merge()

    # ---------------------------------------------------------------- checks
    @invariant()
    def matches_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        for where in (MAIN, self.branch):
            for service in self.services:
                service_view = self.run(self.inventory.get_service(service, where))
                implementation = service_view.implementation  # type: ignore[attr-defined]
                vlan = implementation.vlan.vlan_id if implementation.vlan else None
                assert (vlan, implementation.prefix) == (
                    self.model.slot(service, "vlan").on(where),
                    self.model.slot(service, "prefix").on(where),
                ), (
                    f"{service} on {where}: {vlan, implementation.prefix} (model: {self.model.slot(service, 'vlan').on(where), self.model.slot(service, 'prefix').on(where)})"
                )
        usage = {p.name: p.used for p in self.run(self.inventory.pool_usage())}  # type: ignore[attr-defined]
        assert usage[self.vlan_pool] == len(self.model.vlans()), f"VLANs used: {self.model.vlans()}"
        assert usage[self.prefix_pool] == sum(p.num_addresses for p in self.model.prefixes()), (
            f"prefixes used: {self.model.prefixes()}"
        )
        assert len(set(self.model.vlans())) == len(self.model.vlans())
        assert_disjoint(self.model.prefixes())
        assert self.run(self.inventory.pool_has_room(self.vlan_pool)) is (
            self.model.next_vlan() is not None
        ), "room for a VLAN"
        for length in self.lengths:
            room = self.run(self.inventory.pool_has_room(self.prefix_pool, length))
            if self.exact:
                assert room is self.model.prefix_room(length), f"room for a /{length}"
            elif self.model.prefix_room(length):
                assert room, f"room for a /{length}"
