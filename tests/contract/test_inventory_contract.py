"""The inventory port's contract: what the core relies on, checked on every backend."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Interface

import pytest

from allocation import core, policy
from allocation.backends.embedded import EmbeddedInventory
from allocation.errors import ChangeRefused, PortTaken, ServiceConflict, UnknownSite
from allocation.intent import Bandwidth, IpPackage, ServiceStatus
from allocation.inventory import Inventory
from allocation.model import MAIN, ChangeState
from tests.support import request

SITE = "lyn01"


async def used(inventory: Inventory) -> dict[str, int]:
    return {p.name: p.used for p in await inventory.pool_usage()}


async def held_ports(inventory: Inventory) -> int:
    return sum(p.used for p in await inventory.port_usage() if p.site == SITE)


async def record(inventory: Inventory, identifier: str, **kwargs: object) -> None:
    await inventory.create_service(request(identifier, site=SITE, **kwargs))  # type: ignore[arg-type]


async def test_backend_is_an_inventory(backend: Inventory) -> None:
    assert isinstance(backend, Inventory)


async def test_site_lists_its_devices_and_pools(backend: Inventory) -> None:
    site = await backend.get_site(SITE)
    assert {(d.name, d.role, d.index) for d in site.devices} >= {
        (f"sw01-{SITE}", "core", 1),
        (f"sw02-{SITE}", "core", 2),
        (f"rb01-{SITE}", "edge", 1),
        (f"rb02-{SITE}", "edge", 2),
    }
    assert (site.vlan_pool, site.prefix_pool) == (policy.VLAN_POOL, policy.PREFIX_POOL)
    listed = await backend.list_sites()
    assert listed == sorted(listed) and {"ams01", "bru01", "lyn01", "par01"} <= set(listed)
    with pytest.raises(UnknownSite, match="unknown site 'nowhere1'"):
        await backend.get_site("nowhere1")


async def test_free_ports_are_customer_ports_of_core_switches_with_enough_speed(backend: Inventory) -> None:
    ports = await backend.free_ports(SITE, 10000)
    assert ports and all(p.speed_mbps >= 10000 and p.device_index in (1, 2) for p in ports)
    assert all(p.device.startswith(("sw01-", "sw02-")) for p in ports)
    assert {p.name for p in await backend.free_ports(SITE, 100)} >= {"Ethernet4", "Ethernet8"}
    assert "Ethernet1" not in {p.name for p in await backend.free_ports(SITE, 100)}  # uplinks never


async def test_create_service_is_idempotent_and_identity_is_protected(
    backend: Inventory, new_id: Callable[[], str]
) -> None:
    identifier = new_id()
    created = await backend.create_service(request(identifier, site=SITE), requested_by="contract-tester")
    assert created.requested_by == "contract-tester"
    again = await backend.create_service(request(identifier, site=SITE))
    assert again.status is ServiceStatus.DRAFT and again.site == SITE
    read = await backend.get_service(identifier, MAIN)
    assert read is not None and read.requested_by == "contract-tester"  # who asked, kept
    with pytest.raises(ServiceConflict):
        await backend.create_service(request(identifier, site=SITE, account="SOMEONE-ELSE"))


async def test_status_and_attributes_are_branch_aware(backend: Inventory, new_id: Callable[[], str]) -> None:
    identifier = new_id()
    branch = policy.branch_name(identifier, "modify")
    await record(backend, identifier)
    await backend.create_branch(branch)
    await backend.update_service(identifier, branch, status=ServiceStatus.ACTIVE, bandwidth=Bandwidth.G10)
    on_branch = await backend.get_service(identifier, branch)
    on_main = await backend.get_service(identifier, MAIN)
    assert on_branch and on_main
    assert (on_branch.status, on_branch.bandwidth) == (ServiceStatus.ACTIVE, Bandwidth.G10)
    assert (on_main.status, on_main.bandwidth) == (ServiceStatus.DRAFT, Bandwidth.G1)
    assert identifier in {s.service_identifier for s in await backend.list_services(MAIN)}


async def test_allocations_are_idempotent_global_and_given_back_by_discard(
    backend: Inventory, new_id: Callable[[], str]
) -> None:
    identifier = new_id()
    branch = policy.branch_name(identifier, "deliver")
    await record(backend, identifier)
    await backend.create_branch(branch)
    site = await backend.get_site(SITE)
    pools_before, ports_before = await used(backend), await held_ports(backend)

    vlan = await backend.ensure_vlan(identifier, pool=site.vlan_pool, l2domain=site.l2domain, branch=branch)
    assert vlan == await backend.ensure_vlan(
        identifier, pool=site.vlan_pool, l2domain=site.l2domain, branch=branch
    )
    prefix = await backend.ensure_prefix(
        identifier, pool=site.prefix_pool, length=28, vlan=vlan, branch=branch
    )
    assert prefix.prefixlen == 28
    assert prefix == await backend.ensure_prefix(
        identifier, pool=site.prefix_pool, length=28, vlan=vlan, branch=branch
    )
    port = (await backend.free_ports(SITE, 1000))[0]
    assignment = await backend.claim_port(identifier, port=port, vlan=vlan, branch=branch)
    assert assignment == await backend.claim_port(identifier, port=port, vlan=vlan, branch=branch)
    address = IPv4Interface(f"{next(prefix.hosts())}/{prefix.prefixlen}")
    gateway = await backend.ensure_gateway(
        identifier, device=f"rb01-{SITE}", vlan=vlan, address=address, branch=branch
    )
    assert gateway.address == address and gateway.vlan_id == vlan.vlan_id

    after = await used(backend)
    assert after[site.vlan_pool] == pools_before[site.vlan_pool] + 1
    assert after[site.prefix_pool] == pools_before[site.prefix_pool] + 16
    assert await held_ports(backend) == ports_before + 1
    assert port.id not in {p.id for p in await backend.free_ports(SITE, 100)}  # taken for every branch

    on_branch = await backend.get_service(identifier, branch)
    on_main = await backend.get_service(identifier, MAIN)
    assert on_branch and on_branch.implementation.complete
    assert on_main and on_main.implementation.empty

    await backend.discard_changes(identifier, branch=branch)
    assert await used(backend) == pools_before
    assert await held_ports(backend) == ports_before
    discarded = await backend.get_service(identifier, branch)
    assert discarded and discarded.implementation.empty


async def test_a_port_is_never_held_by_two_services(backend: Inventory, new_id: Callable[[], str]) -> None:
    site = await backend.get_site(SITE)
    first, second = new_id(), new_id()
    branches = {i: policy.branch_name(i, "deliver") for i in (first, second)}
    vlans = {}
    for identifier, branch in branches.items():
        await record(backend, identifier)
        await backend.create_branch(branch)
        vlans[identifier] = await backend.ensure_vlan(
            identifier, pool=site.vlan_pool, l2domain=site.l2domain, branch=branch
        )
    port = (await backend.free_ports(SITE, 1000))[0]
    try:
        await backend.claim_port(first, port=port, vlan=vlans[first], branch=branches[first])
        with pytest.raises(PortTaken):
            await backend.claim_port(second, port=port, vlan=vlans[second], branch=branches[second])
    finally:
        for identifier, branch in branches.items():
            await backend.discard_changes(identifier, branch=branch)


async def test_merge_brings_the_branch_to_main_and_release_returns_on_merge(
    backend: Inventory, new_id: Callable[[], str]
) -> None:
    identifier = new_id()
    deliver, retire = (
        policy.branch_name(identifier, "deliver"),
        policy.branch_name(identifier, "decommission"),
    )
    await record(backend, identifier, package=IpPackage.SMALL)
    pools_before = await used(backend)
    ports_before = await held_ports(backend)

    await backend.update_service(identifier, MAIN, status=ServiceStatus.IN_DELIVERY)
    await backend.create_branch(deliver)
    service = await backend.get_service(identifier, deliver)
    assert service is not None
    impl = await core.apply(await core.plan(service.as_request(), backend, deliver), backend, deliver)
    await backend.update_service(identifier, deliver, status=ServiceStatus.ACTIVE)
    change = await backend.open_proposed_change(deliver, f"Deliver {identifier}", "contract test")
    assert change.state is ChangeState.OPEN and change.branch == deliver
    again = await backend.open_proposed_change(deliver, f"Deliver {identifier}", "again")
    assert again.id == change.id and again.description == "again"  # the open change, brought up to date
    merged = await backend.merge_proposed_change(change.id)
    assert merged.state is ChangeState.MERGED
    assert (await backend.get_proposed_change(deliver) or change).state is ChangeState.MERGED

    on_main = await backend.get_service(identifier, MAIN)
    assert on_main and on_main.status is ServiceStatus.ACTIVE
    assert on_main.implementation == impl

    await backend.update_service(identifier, MAIN, status=ServiceStatus.IN_DECOMMISSIONING)
    await backend.create_branch(retire)
    await core.release(identifier, backend, retire)
    await backend.update_service(identifier, retire, status=ServiceStatus.DECOMMISSIONED)
    still = await backend.get_service(identifier, MAIN)
    assert still and still.implementation == impl  # nothing returns before the merge
    change = await backend.open_proposed_change(retire, f"Decommission {identifier}", "contract test")
    await backend.merge_proposed_change(change.id)
    gone = await backend.get_service(identifier, MAIN)
    assert gone and gone.status is ServiceStatus.DECOMMISSIONED and gone.implementation.empty
    assert await used(backend) == pools_before
    assert await held_ports(backend) == ports_before


async def test_a_merge_the_checks_refuse_changes_nothing(
    backend: Inventory, new_id: Callable[[], str]
) -> None:
    """Half an implementation for an active service: the checks refuse the merge with the reason,
    and the change stays open with main untouched."""
    identifier = new_id()
    branch = policy.branch_name(identifier, "deliver")
    await record(backend, identifier, package=IpPackage.SMALL)
    await backend.update_service(identifier, MAIN, status=ServiceStatus.IN_DELIVERY)
    await backend.create_branch(branch)
    site = await backend.get_site(SITE)
    await backend.ensure_vlan(identifier, pool=site.vlan_pool, l2domain=site.l2domain, branch=branch)
    await backend.update_service(identifier, branch, status=ServiceStatus.ACTIVE)
    change = await backend.open_proposed_change(branch, f"Deliver {identifier}", "contract test")
    try:
        with pytest.raises(ChangeRefused, match=f"{identifier} is active without a prefix, port and gateway"):
            await backend.merge_proposed_change(change.id)
        assert (await backend.get_proposed_change(branch) or change).state is ChangeState.OPEN
        on_main = await backend.get_service(identifier, MAIN)
        assert on_main and on_main.status is ServiceStatus.IN_DELIVERY and on_main.implementation.empty
    finally:
        await backend.close_proposed_change(change.id)
        await backend.discard_changes(identifier, branch=branch)


async def test_a_closed_change_stays_closed(backend: Inventory, new_id: Callable[[], str]) -> None:
    identifier = new_id()
    branch = policy.branch_name(identifier, "deliver")
    await record(backend, identifier)
    await backend.create_branch(branch)
    change = await backend.open_proposed_change(branch, f"Deliver {identifier}", "contract test")
    assert change.decided_by is None
    closed = await backend.close_proposed_change(change.id, by="contract-architect")
    assert closed.state is ChangeState.CLOSED
    # Who decided: what the caller says on the file; on Infrahub, the account of the credentials.
    read = await backend.get_proposed_change(branch)
    assert read is not None and read.decided_by
    if isinstance(backend, EmbeddedInventory):
        assert read.decided_by == "contract-architect"
    with pytest.raises(ServiceConflict):
        await backend.merge_proposed_change(change.id)
    reopened = await backend.open_proposed_change(branch, f"Deliver {identifier}", "second attempt")
    assert reopened.id != change.id and reopened.state is ChangeState.OPEN
    await backend.close_proposed_change(reopened.id)


async def test_services_are_listed_a_page_at_a_time_and_filtered_by_status_and_site(
    backend: Inventory, new_id: Callable[[], str]
) -> None:
    # A shared Infrahub holds other runs' services too: assert on ours and on what every row shows.
    ours = [new_id() for _ in range(3)]
    before = await backend.count_services(MAIN, status=ServiceStatus.IN_DELIVERY, site=SITE)
    for identifier in ours:
        await record(backend, identifier)
    branch = policy.branch_name(ours[0], "deliver")
    try:
        await backend.update_service(ours[0], MAIN, status=ServiceStatus.IN_DELIVERY)
        await backend.update_service(ours[1], MAIN, status=ServiceStatus.IN_DELIVERY)
        await backend.create_branch(branch)
        await backend.update_service(ours[0], branch, status=ServiceStatus.ACTIVE)

        delivering = await backend.list_services(MAIN, status=ServiceStatus.IN_DELIVERY, site=SITE)
        assert {ours[0], ours[1]} <= {s.service_identifier for s in delivering}
        assert ours[2] not in {s.service_identifier for s in delivering}
        assert all(s.status is ServiceStatus.IN_DELIVERY and s.site == SITE for s in delivering)
        counted = await backend.count_services(MAIN, status=ServiceStatus.IN_DELIVERY, site=SITE)
        assert counted == len(delivering) and counted >= before + 2  # others may add theirs meanwhile
        elsewhere = await backend.list_services(MAIN, status=ServiceStatus.IN_DELIVERY, site="bru01")
        assert not {ours[0], ours[1]} & {s.service_identifier for s in elsewhere}

        # The status filter reads the branch: on the delivery branch ours[0] is active.
        active_there = await backend.list_services(branch, status=ServiceStatus.ACTIVE, site=SITE)
        assert ours[0] in {s.service_identifier for s in active_there}

        # Pages are ordered by identifier, never longer than the limit, and follow each other.
        everything = await backend.list_services(MAIN, site=SITE)
        identifiers = [s.service_identifier for s in everything]
        assert identifiers == sorted(identifiers) and set(ours) <= set(identifiers)
        first = await backend.list_services(MAIN, site=SITE, limit=2)
        second = await backend.list_services(MAIN, site=SITE, offset=2, limit=2)
        assert len(first) == 2 and len(second) <= 2
        assert [s.service_identifier for s in first + second] == identifiers[:4]
        assert await backend.list_services(MAIN, site=SITE, offset=len(identifiers) + 10, limit=5) == []
    finally:
        for identifier in ours:  # drafts again, then gone with their delivery branch
            await backend.update_service(identifier, MAIN, status=ServiceStatus.DRAFT)
            await backend.withdraw_service(identifier)
