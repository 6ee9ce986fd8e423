"""The whole life of a service through the flows, as service delivery and the architect see it."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import Bandwidth, IpPackage, ServiceStatus
from allocation.results import Outcome
from tests.flows.conftest import dia, on_main, proposed_changes, request_service, run_transition, usage


async def test_full_lifecycle_returns_every_resource_to_its_pool(inventory: EmbeddedInventory) -> None:
    before = await usage(inventory)

    requested = await request_service(dia(42))
    assert requested.status is ServiceStatus.DRAFT

    delivered = await run_transition("deliver", "DIA-0042", auto_approve=True)
    assert delivered.outcome is Outcome.DONE
    assert delivered.status is ServiceStatus.ACTIVE
    assert delivered.branch == "dia-0042-deliver"
    handover = delivered.resources
    assert handover is not None
    assert IPv4Network(handover.prefix).prefixlen == 29
    assert handover.gateway == next(IPv4Network(handover.prefix).hosts())
    assert handover.customer_addresses == 5
    assert handover.port.startswith("sw0") and "par01" in handover.port
    change = await inventory.get_proposed_change("dia-0042-deliver")
    assert change is not None and str(handover.vlan_id) in change.description
    first_port = handover.port

    faster = await run_transition("modify", "DIA-0042", bandwidth=Bandwidth.G10, auto_approve=True)
    assert faster.outcome is Outcome.DONE and faster.resources is not None
    assert faster.resources.bandwidth_mbps == 10000
    assert "(10000 Mbit/s)" in faster.resources.port and faster.resources.port != first_port
    assert faster.resources.vlan_id == handover.vlan_id
    assert (await usage(inventory))["ports"] == before["ports"] + 1  # the 1G port is free again

    bigger = await run_transition("modify", "DIA-0042", ip_package=IpPackage.MEDIUM, auto_approve=True)
    assert bigger.outcome is Outcome.DONE and bigger.resources is not None
    new_prefix = IPv4Network(bigger.resources.prefix)
    assert new_prefix.prefixlen == 28 and new_prefix != IPv4Network(handover.prefix)
    assert bigger.resources.gateway == IPv4Address(int(new_prefix.network_address) + 1)
    assert bigger.resources.port == faster.resources.port
    after_modify = await usage(inventory)
    assert after_modify["Customer prefixes pool"] == before["Customer prefixes pool"] + 16  # /29 given back

    gone = await run_transition("decommission", "DIA-0042", auto_approve=True)
    assert gone.outcome is Outcome.DONE and gone.status is ServiceStatus.DECOMMISSIONED
    assert gone.resources is None
    service = await on_main(inventory, "DIA-0042")
    assert service.implementation.empty
    assert await usage(inventory) == before
    assert await inventory.leaks() == []


async def test_rerunning_finished_flows_changes_nothing(inventory: EmbeddedInventory) -> None:
    await request_service(dia(7))
    first = await run_transition("deliver", "DIA-0007", auto_approve=True)
    taken = await usage(inventory)
    changes = proposed_changes(inventory)

    again = await request_service(dia(7))
    assert again.status is ServiceStatus.ACTIVE
    second = await run_transition("deliver", "DIA-0007", auto_approve=True)
    assert second.outcome is Outcome.DONE and second.resources == first.resources
    modified = await run_transition("modify", "DIA-0007", bandwidth=Bandwidth.G1, auto_approve=True)
    assert modified.outcome is Outcome.DONE and modified.resources == first.resources
    assert await usage(inventory) == taken
    assert proposed_changes(inventory) == changes  # no new review asked for

    await run_transition("decommission", "DIA-0007", auto_approve=True)
    emptied = await usage(inventory)
    once_more = await run_transition("decommission", "DIA-0007", auto_approve=True)
    assert once_more.status is ServiceStatus.DECOMMISSIONED
    assert await usage(inventory) == emptied
    assert len(proposed_changes(inventory)) == len(changes) + 1
