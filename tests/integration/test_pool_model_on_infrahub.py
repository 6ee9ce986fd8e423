"""The pool state machine (tests/pool_model.py) through the Infrahub backend, on pools of its own.

The test creates a VLAN pool (six IDs in an L2 domain of its own) and a prefix pool (one /27 of
198.19.0.0/16, RFC 2544 space no other pool uses), so exhausting them never touches the shared
Otter-net pools. Every example uses new services and a new branch (an Infrahub branch shows only
what main held when it was created); what they hold is given back after each example, and the
pools, the branches and the services are deleted at the end. No merges (30-75 s each here): the
set-up allocates on main what earlier merges would have left there, before the branch is made.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, run_state_machine_as_test
from infrahub_sdk import Config, InfrahubClient

from allocation.backends.infrahub import InfrahubInventory
from allocation.model import MAIN
from allocation.settings import InfrahubSettings
from tests.integration.conftest import requires_infrahub
from tests.pool_model import PortModel, PortPoolMachine
from tests.support import request

pytestmark = [pytest.mark.integration, requires_infrahub]

_RUN = int(time.time()) % 100000
_SERVICES = itertools.count(1)
VLAN_RANGE = (3000, 3005)


@dataclass(frozen=True)
class OwnPools:
    vlan_pool: str
    prefix_pool: str
    l2domain: str
    resource: IPv4Network


def _client() -> InfrahubClient:
    settings_ = InfrahubSettings()
    token = settings_.api_token.get_secret_value() if settings_.api_token else None
    return InfrahubClient(address=settings_.address, config=Config(api_token=token))


async def _create_pools(pools: OwnPools) -> list[Any]:
    client = _client()
    namespace = await client.get(kind="BuiltinIPNamespace", name__value="default")
    created = []
    for kind, data in (
        ("IpamL2Domain", {"name": pools.l2domain, "description": "pool model test (deleted after)"}),
        ("IpamPrefix", {"prefix": str(pools.resource), "status": "active", "role": "supernet"}),
    ):
        node = await client.create(kind=kind, data=data)
        await node.save()
        created.append(node)
    vlan_pool = await client.create(
        kind="CoreNumberPool",
        data={
            "name": pools.vlan_pool,
            "node": "IpamVLAN",
            "node_attribute": "vlan_id",
            "start_range": VLAN_RANGE[0],
            "end_range": VLAN_RANGE[1],
        },
    )
    await vlan_pool.save()
    prefix_pool = await client.create(
        kind="CoreIPPrefixPool",
        data={
            "name": pools.prefix_pool,
            "default_prefix_type": "IpamPrefix",
            "default_prefix_length": 29,
            "default_member_type": "prefix",
            "ip_namespace": namespace,
            "resources": [created[1]],
        },
    )
    await prefix_pool.save()
    return [prefix_pool, vlan_pool, *reversed(created)]


async def _delete(nodes: list[Any], services: list[str], branches: list[str]) -> None:
    client = _client()
    for branch in branches:
        await client.branch.delete(branch)
    for identifier in services:
        for node in await client.filters(
            kind="ServiceDedicatedInternet", service_identifier__value=identifier
        ):
            await node.delete()
    for node in nodes:
        await node.delete()


@pytest.fixture(scope="module")
def own_pools() -> Iterator[OwnPools]:
    pools = OwnPools(
        vlan_pool=f"Pool model vlans {_RUN}",
        prefix_pool=f"Pool model prefixes {_RUN}",
        l2domain=f"pool-model-{_RUN}",
        resource=IPv4Network(f"198.19.{_RUN % 256}.{32 * (_RUN // 256 % 8)}/27"),
    )
    nodes = asyncio.run(_create_pools(pools))
    yield pools
    asyncio.run(_delete(nodes, InfrahubPortMachine.services_made, InfrahubPortMachine.branches_made))


class InfrahubPortMachine(PortPoolMachine):
    """The port machine on the live Infrahub. Allocations are checked for what any correct pool must
    do (inside the pool, never two holders, exhausted only when the model is); which free value
    Infrahub picks is its own business."""

    pools: OwnPools
    services_made: list[str] = []
    branches_made: list[str] = []
    lengths = (28, 29, 30)
    exact = False
    can_merge = False

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.inventory = InfrahubInventory.from_settings(InfrahubSettings())
        self.vlan_pool, self.prefix_pool = self.pools.vlan_pool, self.pools.prefix_pool
        self.l2domain = self.pools.l2domain
        self.services = tuple(f"PM{_RUN}-{next(_SERVICES):04d}" for _ in range(3))
        self.branch = f"pool-model-{self.services[0].lower()}"

    def run(self, coroutine: object) -> object:
        assert isinstance(coroutine, Coroutine)
        return self.loop.run_until_complete(coroutine)

    @initialize(on_main=st.lists(st.sampled_from((28, 29)), max_size=2))
    def create(self, on_main: list[int]) -> None:
        self.model = PortModel(*VLAN_RANGE, (self.pools.resource,))
        for service in self.services:
            self.run(self.inventory.create_service(request(service, site="par01")))
            self.services_made.append(service)
        for service, length in zip(self.services, on_main, strict=False):
            self.ensure_vlan(service, MAIN)
            self.ensure_prefix(service, MAIN, length)
        self.run(self.inventory.create_branch(self.branch))
        self.branches_made.append(self.branch)

    def teardown(self) -> None:
        try:
            for service in self.services:
                self.run(self.inventory.discard_changes(service, branch=self.branch))
                self.run(self.inventory.release_prefix(service, branch=MAIN))
                self.run(self.inventory.release_vlan(service, branch=MAIN))
        finally:
            self.run(self.inventory.close())
            self.loop.close()


def test_pools_through_the_infrahub_backend_follow_the_model(own_pools: OwnPools) -> None:
    InfrahubPortMachine.pools = own_pools
    run_state_machine_as_test(
        InfrahubPortMachine,
        settings=settings(
            max_examples=3, stateful_step_count=12, derandomize=True, phases=[Phase.explicit, Phase.generate]
        ),
    )
