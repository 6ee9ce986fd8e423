"""The allocation core on the embedded backend: previews, idempotence, exact release, clean errors."""

from __future__ import annotations

import sqlite3
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from allocation import core
from allocation.backends.embedded import EmbeddedInventory
from allocation.errors import NoPortAvailable, PoolExhausted, ServiceConflict, UnknownSite
from allocation.intent import Bandwidth, IpPackage
from allocation.model import MAIN, ChangeState
from tests import lifecycle
from tests.support import request, small_pools_data


def snapshot(inventory: EmbeddedInventory) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table: two equal snapshots mean nothing at all changed."""
    db = sqlite3.connect(inventory.path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    state = {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    db.close()
    return state


async def deliver(inventory: EmbeddedInventory, identifier: str = "DIA-0001", **kwargs: object) -> None:
    await lifecycle.request_service(request(identifier, **kwargs), inventory)  # type: ignore[arg-type]
    change = await lifecycle.prepare(identifier, lifecycle.DELIVER, inventory)
    assert change is not None
    await inventory.merge_proposed_change(change.id)
    assert (
        await lifecycle.conclude(identifier, lifecycle.DELIVER, inventory, change.branch)
        is lifecycle.Outcome.DONE
    )


async def test_plan_reserves_nothing(inventory: EmbeddedInventory) -> None:
    before = snapshot(inventory)
    plan = await core.plan(request(bandwidth=Bandwidth.G10, package=IpPackage.LARGE), inventory)
    assert plan.prefix_length == 27
    assert plan.port.speed_mbps == 10000
    assert plan.router.name == f"rb0{plan.port.device_index}-par01"
    assert [s.action.value for s in plan.steps] == ["allocate"] * 4
    assert snapshot(inventory) == before


async def test_delivered_service_gets_a_consistent_implementation(inventory: EmbeddedInventory) -> None:
    await deliver(inventory, package=IpPackage.MEDIUM)
    service = await lifecycle.get_service("DIA-0001", inventory)
    impl = service.implementation
    assert service.status.value == "active"
    assert impl.complete and impl.vlan and impl.prefix and impl.port and impl.gateway
    assert impl.prefix.prefixlen == 28 and impl.prefix.subnet_of(IPv4Network("203.0.113.0/24"))
    assert impl.port.vlan_id == impl.vlan.vlan_id == impl.gateway.vlan_id
    assert impl.gateway.address.ip == next(impl.prefix.hosts())
    assert impl.gateway.device == f"rb0{impl.port.port.device_index}-par01"
    assert 1000 <= impl.vlan.vlan_id <= 2000


async def test_status_reaches_main_only_with_the_merge(inventory: EmbeddedInventory) -> None:
    await lifecycle.request_service(request(), inventory)
    change = await lifecycle.prepare("DIA-0001", lifecycle.DELIVER, inventory)
    assert change is not None
    on_main = await lifecycle.get_service("DIA-0001", inventory)
    on_branch = await lifecycle.get_service("DIA-0001", inventory, change.branch)
    assert (on_main.status.value, on_branch.status.value) == ("in-delivery", "active")
    assert on_main.implementation.empty and on_branch.implementation.complete


async def test_apply_twice_changes_nothing(inventory: EmbeddedInventory) -> None:
    await lifecycle.request_service(request(), inventory)
    branch = await lifecycle.begin("DIA-0001", lifecycle.DELIVER, inventory)
    assert branch is not None
    first = await core.apply(await lifecycle.plan_on_branch("DIA-0001", inventory, branch), inventory, branch)
    before = snapshot(inventory)
    again = await core.apply(await lifecycle.plan_on_branch("DIA-0001", inventory, branch), inventory, branch)
    assert again == first
    assert snapshot(inventory) == before


async def test_running_a_finished_transition_again_changes_nothing(inventory: EmbeddedInventory) -> None:
    await deliver(inventory)
    before = snapshot(inventory)
    assert await lifecycle.prepare("DIA-0001", lifecycle.DELIVER, inventory) is None
    assert snapshot(inventory) == before


async def test_decommission_returns_every_resource(inventory: EmbeddedInventory) -> None:
    pools_before = await inventory.pool_usage()
    ports_before = await inventory.port_usage()
    await deliver(inventory, "DIA-0001")
    await deliver(inventory, "DIA-0002", bandwidth=Bandwidth.G10, package=IpPackage.LARGE)
    assert await inventory.pool_usage() != pools_before

    for identifier in ("DIA-0001", "DIA-0002"):
        change = await lifecycle.prepare(identifier, lifecycle.DECOMMISSION, inventory)
        assert change is not None
        # Until the merge, main still holds everything: a decommission can still be rejected.
        assert (await lifecycle.get_service(identifier, inventory)).implementation.complete
        await inventory.merge_proposed_change(change.id)
        await lifecycle.conclude(identifier, lifecycle.DECOMMISSION, inventory, change.branch)
        service = await lifecycle.get_service(identifier, inventory)
        assert service.status.value == "decommissioned" and service.implementation.empty

    assert await inventory.pool_usage() == pools_before
    assert await inventory.port_usage() == ports_before
    assert await inventory.leaks() == []


async def test_rejected_delivery_gives_everything_back(inventory: EmbeddedInventory) -> None:
    pools_before = await inventory.pool_usage()
    await lifecycle.request_service(request(), inventory)
    change = await lifecycle.prepare("DIA-0001", lifecycle.DELIVER, inventory)
    assert change is not None
    await inventory.close_proposed_change(change.id)
    assert (
        await lifecycle.conclude("DIA-0001", lifecycle.DELIVER, inventory, change.branch)
        is lifecycle.Outcome.REJECTED
    )
    service = await lifecycle.get_service("DIA-0001", inventory)
    assert service.status.value == "draft" and service.implementation.empty
    assert await inventory.pool_usage() == pools_before and await inventory.leaks() == []

    retry = await lifecycle.prepare("DIA-0001", lifecycle.DELIVER, inventory)
    assert retry is not None and retry.branch == "dia-0001-deliver-2" and retry.state is ChangeState.OPEN


async def test_modify_moves_to_a_faster_port_and_resizes_the_prefix(inventory: EmbeddedInventory) -> None:
    await deliver(inventory, bandwidth=Bandwidth.G1, package=IpPackage.SMALL)
    old = (await lifecycle.get_service("DIA-0001", inventory)).implementation
    change = await lifecycle.prepare(
        "DIA-0001", lifecycle.MODIFY, inventory, bandwidth=Bandwidth.G10, ip_package=IpPackage.LARGE
    )
    assert change is not None
    await inventory.merge_proposed_change(change.id)
    await lifecycle.conclude("DIA-0001", lifecycle.MODIFY, inventory, change.branch)
    service = await lifecycle.get_service("DIA-0001", inventory)
    new = service.implementation
    assert (service.status.value, service.bandwidth, service.ip_package) == (
        "active",
        Bandwidth.G10,
        IpPackage.LARGE,
    )
    assert new.vlan == old.vlan
    assert new.port and old.port and new.port.port.speed_mbps == 10000 and new.port.port != old.port.port
    assert (
        new.prefix
        and new.prefix.prefixlen == 27
        and new.gateway
        and new.gateway.address.ip == next(new.prefix.hosts())
    )
    usage = {p.name: p.used for p in await inventory.pool_usage()}
    assert usage == {"Customer vlan pool": 1, "Customer prefixes pool": 32}  # the old /29 went back
    assert sum(p.used for p in await inventory.port_usage()) == 1
    assert await inventory.leaks() == []


async def test_unknown_site_is_refused_and_nothing_is_recorded(inventory: EmbeddedInventory) -> None:
    before = snapshot(inventory)
    with pytest.raises(
        UnknownSite, match=r"unknown site 'xyz01' \(known sites: ams01, bru01, lyn01, par01\)"
    ):
        await lifecycle.request_service(request(site="xyz01"), inventory)
    assert snapshot(inventory) == before


async def test_no_10g_port_at_bru01_leaves_the_inventory_unchanged(inventory: EmbeddedInventory) -> None:
    before = snapshot(inventory)
    with pytest.raises(NoPortAvailable, match="no free customer port for 10G at bru01"):
        await lifecycle.request_service(request(site="bru01", bandwidth=Bandwidth.G10), inventory)
    assert snapshot(inventory) == before


async def test_a_draft_whose_port_went_meanwhile_fails_to_deliver_cleanly(
    inventory: EmbeddedInventory,
) -> None:
    for n in range(1, 5):  # four 10G ports at par01: the draft fits when it is recorded
        await lifecycle.request_service(request(f"DIA-000{n}", bandwidth=Bandwidth.G10), inventory)
    await lifecycle.request_service(request("DIA-0009", bandwidth=Bandwidth.G10), inventory)
    for n in range(1, 5):
        await deliver(inventory, f"DIA-000{n}", bandwidth=Bandwidth.G10)
    before = snapshot(inventory)
    with pytest.raises(NoPortAvailable, match="10G at par01"):
        await lifecycle.prepare("DIA-0009", lifecycle.DELIVER, inventory)
    assert snapshot(inventory) == before


async def test_exhausted_vlan_pool_is_a_clean_error(tmp_path: Path) -> None:
    inventory = EmbeddedInventory(tmp_path / "inv.sqlite3")
    inventory.load(small_pools_data(tmp_path / "data", vlan_start=1000, vlan_end=1000))
    await lifecycle.request_service(request("DIA-0002"), inventory)  # fits while recorded
    await deliver(inventory, "DIA-0001")
    before = snapshot(inventory)
    with pytest.raises(PoolExhausted, match="'Customer vlan pool' is exhausted: no VLAN ID left"):
        await lifecycle.prepare("DIA-0002", lifecycle.DELIVER, inventory)
    with pytest.raises(PoolExhausted, match="no VLAN ID left"):
        await lifecycle.request_service(request("DIA-0003"), inventory)
    assert snapshot(inventory) == before
    await inventory.close()


async def test_exhausted_prefix_pool_is_a_clean_error(tmp_path: Path) -> None:
    inventory = EmbeddedInventory(tmp_path / "inv.sqlite3")
    inventory.load(small_pools_data(tmp_path / "data", prefix="203.0.113.0/28"))
    await lifecycle.request_service(request("DIA-0002", package=IpPackage.MEDIUM), inventory)
    await deliver(inventory, "DIA-0001", package=IpPackage.SMALL)  # takes half of the /28
    before = snapshot(inventory)
    with pytest.raises(PoolExhausted, match="no /28 prefix left"):
        await lifecycle.prepare("DIA-0002", lifecycle.DELIVER, inventory)
    with pytest.raises(PoolExhausted, match="no /27 prefix left"):
        await lifecycle.request_service(request("DIA-0004", package=IpPackage.LARGE), inventory)
    assert snapshot(inventory) == before
    await deliver(inventory, "DIA-0003", package=IpPackage.SMALL)  # the other half still fits
    await inventory.close()


async def test_an_identifier_cannot_be_taken_over_by_another_account(inventory: EmbeddedInventory) -> None:
    await lifecycle.request_service(request(account="ACC-1"), inventory)
    with pytest.raises(ServiceConflict, match=r"exists already \(draft: account ACC-1"):
        await lifecycle.request_service(request(account="ACC-2"), inventory)


async def test_prefix_pool_reuses_released_space_without_fragmenting(inventory: EmbeddedInventory) -> None:
    for n in range(1, 5):
        await deliver(inventory, f"DIA-000{n}", package=IpPackage.SMALL)
    for n in range(1, 5):
        change = await lifecycle.prepare(f"DIA-000{n}", lifecycle.DECOMMISSION, inventory)
        assert change is not None
        await inventory.merge_proposed_change(change.id)
    # The four /29s merged back into one block: a /27 starts at the beginning of the pool again.
    await deliver(inventory, "DIA-0009", package=IpPackage.LARGE)
    assert (await lifecycle.get_service("DIA-0009", inventory)).implementation.prefix == IPv4Network(
        "203.0.113.0/27"
    )


async def test_main_is_untouched_by_an_open_branch(inventory: EmbeddedInventory) -> None:
    await lifecycle.request_service(request(), inventory)
    await lifecycle.prepare("DIA-0001", lifecycle.DELIVER, inventory)
    assert [s.implementation.empty for s in await inventory.list_services(MAIN)] == [True]


async def test_a_second_modify_interrupted_before_review_resumes_on_its_own_branch(
    inventory: EmbeddedInventory,
) -> None:
    await deliver(inventory)
    first = await lifecycle.prepare("DIA-0001", lifecycle.MODIFY, inventory, ip_package=IpPackage.MEDIUM)
    assert first is not None
    await inventory.merge_proposed_change(first.id)
    # The second modify stops after begin (a crash before its proposed change opens) ...
    branch = await lifecycle.begin("DIA-0001", lifecycle.MODIFY, inventory, ip_package=IpPackage.LARGE)
    assert branch == "dia-0001-modify-2"
    # ... and running it again resumes that attempt instead of refusing the in-delivery service.
    again = await lifecycle.prepare("DIA-0001", lifecycle.MODIFY, inventory, ip_package=IpPackage.LARGE)
    assert again is not None and again.branch == "dia-0001-modify-2"
    await inventory.merge_proposed_change(again.id)
    service = await lifecycle.get_service("DIA-0001", inventory)
    assert service.status.value == "active" and service.implementation.prefix
    assert service.implementation.prefix.prefixlen == 27
