"""The core's decisions for a service that already holds resources, the paths only a race or a failure
reaches, site pools, and the limits of what a request may say. Embedded backend; the inventory
doubles here only lose races or fail on demand, everything else is the real embedded inventory."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from allocation import core, policy
from allocation.backends.embedded import EmbeddedInventory
from allocation.errors import (
    AllocationError,
    InventoryUnavailable,
    MissingDevice,
    NoPortAvailable,
    PoolExhausted,
    PortTaken,
)
from allocation.intent import Bandwidth, IpPackage, ServiceRequest, ServiceStatus, is_valid_identifier
from allocation.model import MAIN, ROLES, Changes, Implementation, PlanningView, Role, Vlan
from tests.support import DATA, request, small_pools_data

BRANCH = "dia-0001-deliver"

SITE_POOLS = """---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: CoreNumberPool
  data:
    - name: Customer vlan pool ams01
      node: IpamVLAN
      node_attribute: vlan_id
      start_range: 2100
      end_range: 2109
---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: CoreIPPrefixPool
  data:
    - name: Customer prefixes pool ams01
      default_prefix_length: 29
      resources:
        - 198.18.0.0/26
    - name: Customer prefixes pool lyn01
      default_prefix_length: 29
      resources:
        - 198.18.1.0/26
"""


def actions(plan: core.Plan) -> list[str]:
    return [f"{s.role} {s.action.value}" for s in plan.steps]


def snapshot(inventory: EmbeddedInventory) -> dict[str, list[tuple[object, ...]]]:
    db = sqlite3.connect(inventory.path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    state = {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    db.close()
    return state


async def held(
    inventory: EmbeddedInventory, wanted: ServiceRequest, branch: str = BRANCH
) -> tuple[core.Plan, Implementation]:
    """The service recorded, planned and applied on its branch."""
    await inventory.create_service(wanted)
    await inventory.create_branch(branch)
    plan = await core.plan(wanted, inventory, branch)
    return plan, await core.apply(plan, inventory, branch)


# ------------------------------------------------------------------ plan for what a service holds


async def test_a_held_service_keeps_its_vlan_and_prefix_even_when_the_pools_are_full(tmp_path: Path) -> None:
    inventory = EmbeddedInventory(tmp_path / "inv.sqlite3")
    inventory.load(
        small_pools_data(tmp_path / "data", vlan_start=1000, vlan_end=1000, prefix="203.0.113.0/29")
    )
    _, impl = await held(inventory, request("DIA-0001"))
    assert impl.vlan and impl.vlan.vlan_id == 1000 and impl.prefix == IPv4Network("203.0.113.0/29")
    plan = await core.plan(request("DIA-0001"), inventory, BRANCH)
    assert actions(plan) == ["vlan keep", "prefix keep", "port keep", "gateway keep"]
    # The same service asking for a bigger prefix needs room the full pool does not have.
    with pytest.raises(
        PoolExhausted, match=r"^pool 'Customer prefixes pool' is exhausted: no /28 prefix left$"
    ):
        await core.plan(request("DIA-0001", package=IpPackage.MEDIUM), inventory, BRANCH)
    # Another service finds both pools full.
    with pytest.raises(PoolExhausted, match=r"^pool 'Customer vlan pool' is exhausted: no VLAN ID left$"):
        await core.plan(request("DIA-0002"), inventory, BRANCH)
    await inventory.close()


async def test_a_faster_order_moves_port_and_gateway_to_the_other_pair(inventory: EmbeddedInventory) -> None:
    plan, old = await held(inventory, request(site="lyn01", bandwidth=Bandwidth.G1))
    assert old.port and old.port.port.device == "sw01-lyn01" and plan.router.name == "rb01-lyn01"
    faster = request(site="lyn01", bandwidth=Bandwidth.G10)
    moved = await core.plan(faster, inventory, BRANCH)
    # sw01 carries this service's own port: the balanced choice is sw02, and so rb02.
    assert actions(moved) == ["vlan keep", "prefix keep", "port replace", "gateway replace"]
    assert (moved.port.device, moved.port.name, moved.router.name) == (
        "sw02-lyn01",
        "Ethernet8",
        "rb02-lyn01",
    )
    assert [s.detail for s in moved.steps][2:] == [
        "sw02-lyn01 Ethernet8 (10000 Mbit/s)",
        "first host of the prefix on rb02-lyn01",
    ]
    new = await core.apply(moved, inventory, BRANCH)
    assert new.port and new.gateway and new.port.port == moved.port
    assert new.gateway.device == "rb02-lyn01" and new.gateway.address == old.gateway.address  # type: ignore[union-attr]
    assert {p.device: p.used for p in await inventory.port_usage() if p.site == "lyn01" and p.used} == {
        "sw02-lyn01": 1
    }
    assert await inventory.leaks() == []


# ------------------------------------------------------------------ site pools beside the global ones


@pytest.fixture
async def with_site_pools(tmp_path: Path) -> AsyncIterator[EmbeddedInventory]:
    data = tmp_path / "data"
    data.mkdir()
    for file in DATA.glob("*.yml"):
        (data / file.name).write_text(file.read_text())
    (data / "07_site_pools.yml").write_text(SITE_POOLS)
    inventory = EmbeddedInventory(tmp_path / "inv.sqlite3")
    inventory.load(data)
    yield inventory
    await inventory.close()


async def test_a_site_with_pools_of_its_own_allocates_from_them(with_site_pools: EmbeddedInventory) -> None:
    inventory = with_site_pools
    site = await inventory.get_site("ams01")
    assert (site.vlan_pool, site.prefix_pool, site.l2domain) == (
        "Customer vlan pool ams01",
        "Customer prefixes pool ams01",
        "ams01",
    )
    plan, impl = await held(inventory, request(site="ams01", package=IpPackage.LARGE))
    assert [s.detail for s in plan.steps][:2] == [
        "next ID from 'Customer vlan pool ams01'",
        "next /27 from 'Customer prefixes pool ams01'",
    ]
    assert impl.vlan == Vlan(vlan_id=2100, name="vlan__DIA-0001", l2domain="ams01")
    assert impl.prefix == IPv4Network("198.18.0.0/27")
    usage = {p.name: p.used for p in await inventory.pool_usage()}
    assert usage == {
        "Customer vlan pool": 0,
        "Customer prefixes pool": 0,
        "Customer vlan pool ams01": 1,
        "Customer prefixes pool ams01": 32,
        "Customer prefixes pool lyn01": 0,
    }


async def test_a_site_prefix_pool_alone_keeps_the_global_vlans_and_domain(
    with_site_pools: EmbeddedInventory,
) -> None:
    site = await with_site_pools.get_site("lyn01")
    assert (site.vlan_pool, site.prefix_pool, site.l2domain) == (
        "Customer vlan pool",
        "Customer prefixes pool lyn01",
        "default",
    )
    _, impl = await held(with_site_pools, request(site="lyn01"))
    assert impl.vlan and impl.vlan.l2domain == "default" and impl.vlan.vlan_id == 1000
    assert impl.prefix == IPv4Network("198.18.1.0/29")
    par01 = await with_site_pools.get_site("par01")
    assert (par01.vlan_pool, par01.prefix_pool) == ("Customer vlan pool", "Customer prefixes pool")


# ------------------------------------------------------------------ races and failures made reachable


class Delegating:
    """The embedded inventory behind the port's one write of a step (``apply_changes``)."""

    def __init__(self, inner: EmbeddedInventory) -> None:
        self.inner = inner
        self.claims: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Racing(Delegating):
    """The embedded inventory, except that a concurrent request claims the port this one is about to
    claim, ``steals`` times (for real: each stolen port ends up held by another service on main)."""

    def __init__(self, inner: EmbeddedInventory, steals: int) -> None:
        super().__init__(inner)
        self.steals = steals
        self.thieves: list[str] = []

    async def apply_changes(self, identifier: str, changes: Changes, **kwargs: Any) -> Implementation:
        port = changes.port
        if port is not None:
            self.claims.append(port.name if port.device.startswith("sw01") else f"2:{port.name}")
        if port is not None and len(self.thieves) < self.steals:
            thief = f"DIA-{99 - len(self.thieves):04d}"
            self.thieves.append(thief)
            await self.inner.create_service(request(thief))
            thief_vlan = await self.inner.ensure_vlan(
                thief, pool=policy.VLAN_POOL, l2domain="default", branch=MAIN
            )
            await self.inner.claim_port(thief, port=port, vlan=thief_vlan, branch=MAIN)
        return await self.inner.apply_changes(identifier, changes, **kwargs)


async def test_a_lost_port_race_is_retried_on_the_next_port(inventory: EmbeddedInventory) -> None:
    racing = Racing(inventory, steals=2)
    plan, impl = await held(racing, request())  # type: ignore[arg-type]
    assert plan.port.name == "Ethernet4"
    # sw01 Ethernet4 went to a concurrent request; sw02 was then the balanced switch, and its
    # Ethernet4 went too; with one port held on each, sw01 is chosen again.
    assert racing.claims == ["Ethernet4", "2:Ethernet4", "Ethernet5"]
    assert impl.port and (impl.port.port.device, impl.port.port.name) == ("sw01-par01", "Ethernet5")
    assert impl.gateway and impl.gateway.device == "rb01-par01"
    taken = [await inventory.get_service(t, MAIN) for t in racing.thieves]
    assert [
        (t.implementation.port.port.device, t.implementation.port.port.name)
        for t in taken
        if t and t.implementation.port
    ] == [
        ("sw01-par01", "Ethernet4"),
        ("sw02-par01", "Ethernet4"),
    ]


class AlwaysTaken(Delegating):
    async def apply_changes(self, identifier: str, changes: Changes, **kwargs: Any) -> Implementation:
        if changes.port is not None:
            self.claims.append(changes.port.id)
            raise PortTaken(changes.port.id)
        return await self.inner.apply_changes(identifier, changes, **kwargs)


async def test_losing_every_race_gives_up_cleanly_and_rolls_back(inventory: EmbeddedInventory) -> None:
    await inventory.create_service(request())
    await inventory.create_branch(BRANCH)
    before = snapshot(inventory)
    always = AlwaysTaken(inventory)
    plan = await core.plan(request(), always, BRANCH)  # type: ignore[arg-type]
    with pytest.raises(NoPortAvailable, match="no free customer port for 1G at par01"):
        await core.apply(plan, always, BRANCH)  # type: ignore[arg-type]
    assert len(always.claims) == core.PORT_CLAIM_ATTEMPTS
    # The VLAN and the prefix it took before the port went back: nothing half-allocated.
    assert snapshot(inventory) == before


class FailingAt(Delegating):
    """Writes what comes before ``role`` (in the order of allocation), then fails with ``error``."""

    def __init__(self, inner: EmbeddedInventory, role: Role, error: Exception) -> None:
        super().__init__(inner)
        self.role, self.error = role, error

    async def apply_changes(self, identifier: str, changes: Changes, **kwargs: Any) -> Implementation:
        if getattr(changes, self.role) is None:
            return await self.inner.apply_changes(identifier, changes, **kwargs)
        later = ROLES[ROLES.index(self.role) :]
        await self.inner.apply_changes(identifier, changes.model_copy(update=dict.fromkeys(later)), **kwargs)
        raise self.error


@pytest.mark.parametrize("step", ["prefix", "port", "gateway"])
async def test_a_domain_error_mid_apply_puts_the_branch_back(
    inventory: EmbeddedInventory, step: Role
) -> None:
    await inventory.create_service(request())
    await inventory.create_branch(BRANCH)
    before = snapshot(inventory)
    failing = FailingAt(inventory, step, MissingDevice("par01", "edge", 1))
    plan = await core.plan(request(), inventory, BRANCH)
    with pytest.raises(MissingDevice):
        await core.apply(plan, failing, BRANCH)  # type: ignore[arg-type]
    assert snapshot(inventory) == before


async def test_an_unreachable_inventory_mid_apply_keeps_what_was_taken_for_the_retry(
    inventory: EmbeddedInventory,
) -> None:
    await inventory.create_service(request())
    await inventory.create_branch(BRANCH)
    plan = await core.plan(request(), inventory, BRANCH)
    with pytest.raises(InventoryUnavailable):
        await core.apply(plan, FailingAt(inventory, "gateway", InventoryUnavailable("down")), BRANCH)  # type: ignore[arg-type]
    partial = await inventory.get_service("DIA-0001", BRANCH)
    assert partial and partial.implementation.port and partial.implementation.gateway is None
    done = await core.apply(plan, inventory, BRANCH)  # the retry finishes the same allocation
    assert (
        done.complete
        and done.port == partial.implementation.port
        and done.vlan == partial.implementation.vlan
    )


async def test_a_site_without_its_edge_router_is_a_domain_error(inventory: EmbeddedInventory) -> None:
    class NoRouters(Delegating):
        async def planning_view(self, *args: Any, **kwargs: Any) -> PlanningView:
            view = await self.inner.planning_view(*args, **kwargs)
            site = view.site.model_copy(
                update={"devices": tuple(d for d in view.site.devices if d.role != "edge")}
            )
            return view.model_copy(update={"site": site})

    with pytest.raises(MissingDevice, match="site par01 has no edge device with index 1"):
        await core.plan(request(), NoRouters(inventory))  # type: ignore[arg-type]
    assert issubclass(MissingDevice, AllocationError)


async def test_steps_on_a_service_that_does_not_exist_say_so(inventory: EmbeddedInventory) -> None:
    plan = await core.plan(request("DIA-0404"), inventory)
    with pytest.raises(AllocationError, match="no service 'DIA-0404'"):
        await core.allocate_resources(plan, inventory, MAIN)


# ------------------------------------------------------------------ what a request may say


def make(identifier: str = "DIA-0042", site: str = "par01", account: str = "ACC-1") -> ServiceRequest:
    return ServiceRequest(
        service_identifier=identifier,
        account_reference=account,
        site=site,
        bandwidth="1000",
        ip_package="small",
    )


@pytest.mark.parametrize("identifier", ["AB-1", "A1-0", "ABCDEFGHIJ-12345678", "Z9Z9Z9Z9Z9-0"])
def test_identifiers_at_the_limits_of_the_pattern_are_accepted(identifier: str) -> None:
    assert make(identifier).service_identifier == identifier
    assert is_valid_identifier(identifier)


@pytest.mark.parametrize(
    "identifier",
    ["A-1", "ABCDEFGHIJK-1", "AB-123456789", "1B-1", "AB-", "-1", "AB-1-2", "AB 1", "ÄB-1", "AB-\u0661"],
)
def test_identifiers_beyond_the_pattern_are_refused(identifier: str) -> None:
    with pytest.raises(ValidationError, match="service_identifier"):
        make(identifier)
    assert not is_valid_identifier(identifier)


def test_identifier_check_does_not_normalise() -> None:
    assert not is_valid_identifier("dia-0042") and not is_valid_identifier(" DIA-0042")
    assert make(" dia-0042\t").service_identifier == "DIA-0042"


@pytest.mark.parametrize("site", ["ab", "par01", "a-1", "p" + "a" * 31, " PAR01 "])
def test_site_names_at_the_limits_are_accepted(site: str) -> None:
    assert make(site=site).site == site.strip().lower()


@pytest.mark.parametrize(
    "site", ["p", "1par", "-par", "par 01", "par_01", "p" + "a" * 32, "", "par01;", "pär01"]
)
def test_malformed_site_names_are_refused(site: str) -> None:
    with pytest.raises(ValidationError, match="site"):
        make(site=site)


@pytest.mark.parametrize(("account", "ok"), [("A", True), ("A" * 64, True), ("", False), ("A" * 65, False)])
def test_account_reference_length(account: str, ok: bool) -> None:
    if ok:
        assert make(account=account).account_reference == account
    else:
        with pytest.raises(ValidationError, match="account_reference"):
            make(account=account)


def test_requests_are_frozen_and_strings_stripped() -> None:
    wanted = make(account="  ACC-7  ")
    assert wanted.account_reference == "ACC-7"
    with pytest.raises(ValidationError):
        wanted.site = "lyn01"  # type: ignore[misc]


def test_non_strings_reach_the_pattern_check_unchanged() -> None:
    with pytest.raises(ValidationError, match="service_identifier"):
        ServiceRequest(
            service_identifier=42,  # type: ignore[arg-type]
            account_reference="A",
            site="par01",
            bandwidth="1000",
            ip_package="small",
        )
    with pytest.raises(ValidationError, match="site"):
        ServiceRequest(
            service_identifier="DIA-1",
            account_reference="A",
            site=7,  # type: ignore[arg-type]
            bandwidth="1000",
            ip_package="small",
        )


def test_catalog_values() -> None:
    assert [b.mbps for b in Bandwidth] == [100, 1000, 10000]
    assert [p.value for p in IpPackage] == ["small", "medium", "large"]
    assert ServiceStatus.parse("active") is ServiceStatus.ACTIVE
    with pytest.raises(ValueError, match="'retired' is not a valid ServiceStatus"):
        ServiceStatus.parse("retired")
    with pytest.raises(ValidationError, match="bandwidth"):
        ServiceRequest(
            service_identifier="DIA-1",
            account_reference="A",
            site="par01",
            bandwidth="2500",
            ip_package="small",
        )


class Recording(Delegating):
    """Records which gateways the core asks the inventory to remove. On Infrahub a gateway is an L3
    interface on one router, and one left behind on the old router is a leak; the embedded backend
    overwrites its single gateway row, so only the request itself can be checked here."""

    def __init__(self, inner: EmbeddedInventory) -> None:
        super().__init__(inner)
        self.released: list[str] = []

    async def apply_changes(self, identifier: str, changes: Changes, **kwargs: Any) -> Implementation:
        if "gateway" in changes.release:
            self.released.append(f"{identifier}@{kwargs['branch']}")
        return await self.inner.apply_changes(identifier, changes, **kwargs)


@pytest.mark.parametrize(
    ("bandwidth", "package", "released"),
    [
        (Bandwidth.G1, IpPackage.SMALL, []),  # same router, same address: nothing to remove
        (Bandwidth.M100, IpPackage.SMALL, []),  # a slower order keeps its port and its gateway
        (Bandwidth.G1, IpPackage.MEDIUM, [f"DIA-0001@{BRANCH}"]),  # new prefix: new gateway address
        (Bandwidth.G10, IpPackage.SMALL, [f"DIA-0001@{BRANCH}"]),  # other switch: other router
    ],
)
async def test_the_old_gateway_is_removed_exactly_when_it_moves(
    inventory: EmbeddedInventory, bandwidth: Bandwidth, package: IpPackage, released: list[str]
) -> None:
    _, old = await held(inventory, request(site="lyn01"))
    recording = Recording(inventory)
    wanted = request(site="lyn01", bandwidth=bandwidth, package=package)
    new = await core.apply(await core.plan(wanted, recording, BRANCH), recording, BRANCH)  # type: ignore[arg-type]
    assert recording.released == released
    assert new.gateway and new.prefix and new.gateway.address == policy.gateway_address(new.prefix)
    assert (new.gateway == old.gateway) is (released == [])


def test_allocation_keys_are_the_pool_identifiers_infrahub_keeps() -> None:
    """Changing them would orphan every reservation a live Infrahub holds for existing services."""
    assert policy.allocation_key("DIA-0042", "vlan") == "DIA-0042/vlan"
    assert policy.allocation_key("DIA-0042", "prefix", 28) == "DIA-0042/prefix/28"
    assert policy.allocation_key("DIA-0042", "port", "sw01:Ethernet4") == "DIA-0042/port/sw01:Ethernet4"
