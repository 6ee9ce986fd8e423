"""`plan` on a service that already holds resources, on every backend: what it keeps, what it replaces,
and that applying it gives back exactly what it replaced.

Everything happens on the service's own branch (what a branch took goes back at once when released
there), so no merge is needed and `discard_changes` leaves the shared Infrahub as it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from allocation import core, policy
from allocation.core import Action
from allocation.intent import Bandwidth, IpPackage
from allocation.inventory import Inventory
from allocation.model import MAIN, Implementation
from tests.support import request

SITE = "lyn01"


@dataclass
class Delivered:
    identifier: str
    branch: str
    implementation: Implementation


async def used(inventory: Inventory) -> dict[str, int]:
    return {p.name: p.used for p in await inventory.pool_usage()}


async def held_ports(inventory: Inventory) -> int:
    return sum(p.used for p in await inventory.port_usage() if p.site == SITE)


def actions(plan: core.Plan) -> dict[str, Action]:
    return {step.role: step.action for step in plan.steps}


def detail(plan: core.Plan, role: str) -> str:
    return next(step.detail for step in plan.steps if step.role == role)


@pytest.fixture
async def delivered(backend: Inventory, new_id: Callable[[], str]) -> AsyncIterator[Delivered]:
    """A small 1G service at lyn01, allocated on its delivery branch (not merged); discarded afterwards."""
    identifier = new_id()
    branch = policy.branch_name(identifier, "deliver")
    wanted = request(identifier, site=SITE, bandwidth=Bandwidth.G1, package=IpPackage.SMALL)
    await backend.create_service(wanted)
    await backend.create_branch(branch)
    implementation = await core.apply(await core.plan(wanted, backend, branch), backend, branch)
    yield Delivered(identifier, branch, implementation)
    await backend.discard_changes(identifier, branch=branch)


async def test_the_same_request_keeps_everything(backend: Inventory, delivered: Delivered) -> None:
    impl = delivered.implementation
    assert impl.vlan and impl.prefix and impl.port and impl.gateway
    wanted = request(delivered.identifier, site=SITE, bandwidth=Bandwidth.G1, package=IpPackage.SMALL)
    plan = await core.plan(wanted, backend, delivered.branch)
    assert actions(plan) == {role: Action.KEEP for role in ("vlan", "prefix", "port", "gateway")}
    assert plan.current == impl and plan.port == impl.port.port
    assert plan.router.name == impl.gateway.device
    assert detail(plan, "vlan") == f"VLAN {impl.vlan.vlan_id}"
    assert detail(plan, "prefix") == str(impl.prefix)
    assert detail(plan, "port") == f"{impl.port.port.device} {impl.port.port.name} (1000 Mbit/s)"
    # A slower order still fits the port it has.
    slower = await core.plan(
        wanted.model_copy(update={"bandwidth": Bandwidth.M100}), backend, delivered.branch
    )
    assert actions(slower)["port"] is Action.KEEP and slower.port == impl.port.port
    # Main holds nothing yet: there, the same request allocates everything.
    on_main = await core.plan(wanted, backend, MAIN)
    assert actions(on_main) == {role: Action.ALLOCATE for role in ("vlan", "prefix", "port", "gateway")}
    assert on_main.current.empty


@pytest.mark.parametrize(("package", "length"), [(IpPackage.MEDIUM, 28), (IpPackage.LARGE, 27)])
async def test_a_package_change_replaces_the_prefix_and_the_gateway_only(
    backend: Inventory, delivered: Delivered, package: IpPackage, length: int
) -> None:
    old = delivered.implementation
    assert old.prefix and old.gateway
    before = await used(backend)
    wanted = request(delivered.identifier, site=SITE, bandwidth=Bandwidth.G1, package=package)
    plan = await core.plan(wanted, backend, delivered.branch)
    assert actions(plan) == {
        "vlan": Action.KEEP,
        "prefix": Action.REPLACE,
        "port": Action.KEEP,
        "gateway": Action.REPLACE,
    }
    assert plan.prefix_length == length
    assert detail(plan, "prefix") == f"next /{length} from 'Customer prefixes pool'"

    new = await core.apply(plan, backend, delivered.branch)
    assert new.prefix and new.gateway and new.prefix.prefixlen == length
    assert (new.vlan, new.port) == (old.vlan, old.port)
    assert (
        new.gateway.address == policy.gateway_address(new.prefix) and new.gateway.device == old.gateway.device
    )
    # The old /29 was taken on this branch: it is back at once, the new prefix is held instead.
    after = await used(backend)
    assert after[policy.PREFIX_POOL] == before[policy.PREFIX_POOL] - 8 + 2 ** (32 - length)
    assert after[policy.VLAN_POOL] == before[policy.VLAN_POOL]
    shown = await backend.get_service(delivered.identifier, delivered.branch)
    assert shown and shown.implementation == new


async def test_a_faster_order_moves_to_a_port_that_carries_it(
    backend: Inventory, delivered: Delivered
) -> None:
    old = delivered.implementation
    assert old.port and old.gateway and old.port.port.speed_mbps == 1000
    ports_before = await held_ports(backend)
    wanted = request(delivered.identifier, site=SITE, bandwidth=Bandwidth.G10, package=IpPackage.SMALL)
    plan = await core.plan(wanted, backend, delivered.branch)
    moved_router = plan.router.name != old.gateway.device
    assert actions(plan) == {
        "vlan": Action.KEEP,
        "prefix": Action.KEEP,
        "port": Action.REPLACE,
        "gateway": Action.REPLACE if moved_router else Action.KEEP,
    }
    assert plan.port.speed_mbps == 10000 and plan.port != old.port.port
    assert plan.router.name == f"rb0{plan.port.device_index}-{SITE}"

    new = await core.apply(plan, backend, delivered.branch)
    assert new.port and new.gateway and new.port.port == plan.port
    assert (new.vlan, new.prefix) == (old.vlan, old.prefix)
    assert new.gateway.device == plan.router.name and new.gateway.address == old.gateway.address
    # One port held, not two: the 1G port taken on this branch went back when the service moved.
    assert await held_ports(backend) == ports_before


async def test_release_gives_back_what_the_branch_took(backend: Inventory, delivered: Delivered) -> None:
    before = await used(backend)
    ports_before = await held_ports(backend)
    await core.release(delivered.identifier, backend, delivered.branch)
    shown = await backend.get_service(delivered.identifier, delivered.branch)
    assert shown and shown.implementation.empty
    after = await used(backend)
    assert after[policy.VLAN_POOL] == before[policy.VLAN_POOL] - 1
    assert after[policy.PREFIX_POOL] == before[policy.PREFIX_POOL] - 8
    assert await held_ports(backend) == ports_before - 1
    # Planning again allocates everything anew.
    wanted = request(delivered.identifier, site=SITE, bandwidth=Bandwidth.G1, package=IpPackage.SMALL)
    plan = await core.plan(wanted, backend, delivered.branch)
    assert actions(plan) == {role: Action.ALLOCATE for role in ("vlan", "prefix", "port", "gateway")}
