"""The embedded pools against a plain reference model (tests/pool_model.py), step by step.

Two machines: one drives allocation/backends/embedded/pools.py directly with random pools
(random VLAN ranges, one to three prefix resources, random lengths), the other drives the same
pools through the inventory port (ensure / release / discard / merge on a branch) on the embedded
backend. After every step what the pools hold, their free lists, usage and room must equal what
the model computes from the held ranges alone.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import Coroutine
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from allocation.backends.embedded import EmbeddedInventory, pools
from allocation.model import MAIN
from tests.pool_model import PortModel, PortPoolMachine, best_fit, free_blocks, free_intervals, room_for
from tests.support import request

VLANS, PREFIXES = "vlans", "prefixes"
IDENTIFIERS = tuple(f"S{n}" for n in range(6))
LENGTHS = (26, 27, 28, 29, 30)


@st.composite
def prefix_resources(draw: st.DrawFn) -> list[IPv4Network]:
    """One to three disjoint aligned blocks of 10.0.0.0/24, /25 to /28; often the first is given as
    its two halves, two resources that are buddies (a free block never spans two resources)."""
    candidates = [b for n in (25, 26, 27, 28) for b in IPv4Network("10.0.0.0/24").subnets(new_prefix=n)]
    chosen = draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=3, unique=True))
    if chosen[0].prefixlen < 28 and draw(st.booleans()):
        chosen[:1] = list(chosen[0].subnets(prefixlen_diff=1))
    disjoint: list[IPv4Network] = []
    for block in chosen:
        if not any(block.overlaps(d) for d in disjoint):
            disjoint.append(block)
    return disjoint


class PoolMachine(RuleBasedStateMachine):
    """pools.py on its own SQLite connection, beside a neighbour pool of each kind that must never move."""

    def __init__(self) -> None:
        super().__init__()
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        self.db.executescript(pools.SCHEMA)
        self.numbers: dict[str, int] = {}
        self.prefixes: dict[str, IPv4Network] = {}
        self.fresh = 0

    @initialize(lo=st.integers(1, 4000), size=st.integers(1, 12), resources=prefix_resources())
    def create(self, lo: int, size: int, resources: list[IPv4Network]) -> None:
        self.lo, self.hi, self.resources = lo, lo + size - 1, resources
        pools.create_number_pool(self.db, VLANS, self.lo, self.hi)
        pools.create_prefix_pool(self.db, PREFIXES, 29, resources)
        # Neighbours with the same ranges and an identifier of ours: nothing here may touch them.
        pools.create_number_pool(self.db, "other vlans", self.lo, self.hi)
        pools.create_prefix_pool(self.db, "other prefixes", 29, resources)
        assert pools.allocate_number(self.db, "other vlans", IDENTIFIERS[0]) == self.lo
        assert pools.allocate_prefix(self.db, "other prefixes", IDENTIFIERS[0], 30) == best_fit(
            resources, [], 30
        )
        self.neighbours = self._rows("other vlans", "other prefixes")

    def _rows(self, *names: str) -> list[tuple[Any, ...]]:
        return [
            row
            for table in ("number_free", "prefix_free", "reservation")
            for row in sorted(self.db.execute(f"SELECT * FROM {table}").fetchall())
            if row[0] in names
        ]

    # ------------------------------------------------------------------ steps with their expectations
    def take_number(self, identifier: str) -> int | None:
        free = [n for n in range(self.lo, self.hi + 1) if n not in self.numbers.values()]
        expected = self.numbers.get(identifier, free[0] if free else None)
        got = pools.allocate_number(self.db, VLANS, identifier)
        assert got == expected
        if got is not None:
            self.numbers[identifier] = got
        return got

    def take_prefix(self, identifier: str, length: int) -> IPv4Network | None:
        held = self.prefixes.get(identifier)
        expected = (
            held if held is not None else best_fit(self.resources, list(self.prefixes.values()), length)
        )
        got = pools.allocate_prefix(self.db, PREFIXES, identifier, length)
        assert got == expected
        if got is not None:
            self.prefixes[identifier] = got
        return got

    @rule(identifier=st.sampled_from(IDENTIFIERS))
    def allocate_number(self, identifier: str) -> None:
        self.take_number(identifier)

    @rule(identifier=st.sampled_from(IDENTIFIERS), length=st.sampled_from(LENGTHS))
    def allocate_prefix(self, identifier: str, length: int) -> None:
        self.take_prefix(identifier, length)

    @rule(identifier=st.sampled_from(IDENTIFIERS))
    def release_number(self, identifier: str) -> None:
        pools.release(self.db, VLANS, identifier)
        self.numbers.pop(identifier, None)

    @rule(identifier=st.sampled_from(IDENTIFIERS))
    def release_prefix(self, identifier: str) -> None:
        pools.release(self.db, PREFIXES, identifier)
        self.prefixes.pop(identifier, None)

    @rule()
    def exhaust_numbers(self) -> None:
        while self.take_number(f"X{self.fresh}") is not None:
            self.fresh += 1

    @rule(length=st.sampled_from(LENGTHS))
    def exhaust_prefixes(self, length: int) -> None:
        while self.take_prefix(f"X{self.fresh}", length) is not None:
            self.fresh += 1

    @rule(data=st.data())
    def release_everything(self, data: st.DataObject) -> None:
        held = [(VLANS, i) for i in self.numbers] + [(PREFIXES, i) for i in self.prefixes]
        for pool, identifier in data.draw(st.permutations(held), "order"):
            pools.release(self.db, pool, identifier)
        self.numbers.clear()
        self.prefixes.clear()

    # ------------------------------------------------------------------ checks
    @invariant()
    def free_lists_are_what_the_held_ranges_leave(self) -> None:
        if not hasattr(self, "lo"):
            return
        numbers = self.db.execute("SELECT lo, hi FROM number_free WHERE pool = ? ORDER BY lo", (VLANS,))
        assert numbers.fetchall() == free_intervals(self.lo, self.hi, set(self.numbers.values()))
        blocks = self.db.execute("SELECT length, network FROM prefix_free WHERE pool = ?", (PREFIXES,))
        assert sorted(IPv4Network((n, length)) for length, n in blocks) == sorted(
            free_blocks(self.resources, list(self.prefixes.values()))
        )

    @invariant()
    def reservations_usage_and_room_agree(self) -> None:
        if not hasattr(self, "lo"):
            return
        assert {i: pools.reserved(self.db, VLANS, i) for i in self.numbers} == {
            i: str(n) for i, n in self.numbers.items()
        }
        assert {i: pools.reserved(self.db, PREFIXES, i) for i in self.prefixes} == {
            i: str(p) for i, p in self.prefixes.items()
        }
        assert pools.reserved(self.db, VLANS, "nobody") is None
        usage = {name: (kind, used, total) for name, kind, used, total in pools.usage(self.db)}
        assert usage[VLANS] == ("number", len(self.numbers), self.hi - self.lo + 1)
        assert usage[PREFIXES] == (
            "prefix",
            sum(p.num_addresses for p in self.prefixes.values()),
            sum(r.num_addresses for r in self.resources),
        )
        assert pools.has_room(self.db, VLANS, None) is (len(self.numbers) < self.hi - self.lo + 1)
        for length in LENGTHS:
            assert pools.has_room(self.db, PREFIXES, length) is room_for(
                self.resources, list(self.prefixes.values()), length
            )
        assert self._rows("other vlans", "other prefixes") == self.neighbours

    def teardown(self) -> None:
        self.db.close()


TestPoolsAgainstTheModel = PoolMachine.TestCase
TestPoolsAgainstTheModel.settings = settings(stateful_step_count=30)


# ------------------------------------------------------------------ the same pools through the port

POOLS_FILE = """---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: IpamL2Domain
  data:
    - name: model
---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: CoreNumberPool
  data:
    - name: Model vlan pool
      node: IpamVLAN
      node_attribute: vlan_id
      start_range: {lo}
      end_range: {hi}
---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: CoreIPPrefixPool
  data:
    - name: Model prefix pool
      default_prefix_length: 29
      resources:
{resources}
"""


class EmbeddedPortMachine(PortPoolMachine):
    """The port machine on a fresh in-memory embedded inventory holding only the two model pools."""

    services = ("PM-1", "PM-2", "PM-3", "PM-4")
    branch = "pool-model"
    vlan_pool, prefix_pool, l2domain = "Model vlan pool", "Model prefix pool", "model"
    lengths = (27, 28, 29, 30)

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.inventory = EmbeddedInventory(":memory:")

    def run(self, coroutine: object) -> object:
        assert isinstance(coroutine, Coroutine)
        return self.loop.run_until_complete(coroutine)

    @initialize(
        lo=st.integers(1, 4000),
        size=st.integers(1, 8),
        resources=prefix_resources().filter(lambda r: sum(b.num_addresses for b in r) <= 128),
        on_main=st.lists(st.tuples(st.sampled_from(services), st.sampled_from(lengths)), max_size=3),
    )
    def create(
        self, lo: int, size: int, resources: list[IPv4Network], on_main: list[tuple[str, int]]
    ) -> None:
        with tempfile.TemporaryDirectory() as data:
            listed = "\n".join(f"        - {r}" for r in resources)
            (Path(data) / "pools.yml").write_text(
                POOLS_FILE.format(lo=lo, hi=lo + size - 1, resources=listed)
            )
            self.inventory.load(Path(data))
        self.model = PortModel(lo, lo + size - 1, tuple(resources))
        for service in self.services:
            self.run(self.inventory.create_service(request(service, site="par01")))
        self.run(self.inventory.create_branch(self.branch))
        # What earlier, merged changes left on main: the branch starts from it.
        for service, length in on_main:
            self.ensure_vlan(service, MAIN)
            if self.model.slot(service, "vlan").on(MAIN) is not None:
                self.ensure_prefix(service, MAIN, length)

    def merge(self) -> None:
        # The branch's merge alone, without the proposed change's review checks: the model's services
        # are not Dedicated Internet services (a VLAN and a prefix of any length from the model pools,
        # at a site this inventory does not hold), and the checks would rightly refuse them. What is
        # checked here is what the merge does to the pools.
        with self.inventory._write() as db:
            self.inventory._merge_branch(db, self.branch)
        self.model.merge()

    def teardown(self) -> None:
        self.run(self.inventory.close())
        self.loop.close()


TestPortPoolsAgainstTheModel = EmbeddedPortMachine.TestCase
TestPortPoolsAgainstTheModel.settings = settings(stateful_step_count=20)


@pytest.mark.slow
class TestPoolsAgainstTheModelExhaustively(PoolMachine.TestCase):  # type: ignore[misc,valid-type]
    settings = settings(settings.get_profile("slow"), max_examples=5000, stateful_step_count=60)


@pytest.mark.slow
class TestPortPoolsAgainstTheModelExhaustively(EmbeddedPortMachine.TestCase):  # type: ignore[misc,valid-type]
    settings = settings(settings.get_profile("slow"), max_examples=1000, stateful_step_count=50)


# ------------------------------------------------------------------ what the machines found, kept


def _prefix_pool(resources: list[str]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(pools.SCHEMA)
    pools.create_prefix_pool(db, PREFIXES, 29, [IPv4Network(r) for r in resources])
    return db


def _free(db: sqlite3.Connection) -> list[str]:
    rows = db.execute("SELECT length, network FROM prefix_free WHERE pool = ? ORDER BY network", (PREFIXES,))
    return [str(IPv4Network((network, length))) for length, network in rows]


def test_two_adjacent_resources_never_merge_into_one_block() -> None:
    """Shrunk by TestPoolsAgainstTheModel: two /27 resources that are buddies, both taken and given
    back, merged into a /26 spanning both, which Infrahub (one resource at a time) never hands out."""
    db = _prefix_pool(["10.0.0.0/27", "10.0.0.32/27"])
    assert pools.allocate_prefix(db, PREFIXES, "X0", 27) == IPv4Network("10.0.0.0/27")
    assert pools.allocate_prefix(db, PREFIXES, "X1", 27) == IPv4Network("10.0.0.32/27")
    pools.release(db, PREFIXES, "X0")
    pools.release(db, PREFIXES, "X1")
    assert _free(db) == ["10.0.0.0/27", "10.0.0.32/27"]
    assert not pools.has_room(db, PREFIXES, 26)
    assert pools.allocate_prefix(db, PREFIXES, "X2", 26) is None


def test_released_blocks_merge_up_to_their_resource() -> None:
    db = _prefix_pool(["10.0.0.64/26", "10.0.0.128/27"])
    taken = [pools.allocate_prefix(db, PREFIXES, f"S{n}", 28) for n in range(4)]
    # Best fit: the /27 is used up before the /26 is split.
    assert [str(p) for p in taken] == ["10.0.0.128/28", "10.0.0.144/28", "10.0.0.64/28", "10.0.0.80/28"]
    assert _free(db) == ["10.0.0.96/27"]
    for n in (2, 0, 3, 1):
        pools.release(db, PREFIXES, f"S{n}")
    assert _free(db) == ["10.0.0.64/26", "10.0.0.128/27"]


def test_a_pool_recorded_before_its_resources_were_learns_them_on_the_next_load() -> None:
    db = _prefix_pool(["10.0.0.0/27", "10.0.0.32/27"])
    db.execute("DELETE FROM prefix_resource")  # an inventory file written by an earlier version
    pools.create_prefix_pool(db, PREFIXES, 29, [IPv4Network("10.0.0.0/27"), IPv4Network("10.0.0.32/27")])
    pools.allocate_prefix(db, PREFIXES, "S0", 28)
    pools.release(db, PREFIXES, "S0")
    assert _free(db) == ["10.0.0.0/27", "10.0.0.32/27"]


def test_overlapping_resources_are_refused() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(pools.SCHEMA)
    with pytest.raises(ValueError, match=r"resources 10.0.0.0/24 and 10.0.0.128/25 overlap"):
        pools.create_prefix_pool(db, PREFIXES, 29, [IPv4Network("10.0.0.0/24"), IPv4Network("10.0.0.128/25")])
    with pytest.raises(ValueError, match="start 20 is above end 10"):
        pools.create_number_pool(db, VLANS, 20, 10)
