"""The Infrahub backend against a live Infrahub: a whole service life, a lost race, a dead server.

What Infrahub holds is checked with plain GraphQL through the SDK's own client, not through the
backend under test.

In the service's life (``make test-slow``: its two merges are minutes) each merge is made through
Infrahub's own API, as an architect does in Infrahub's UI (no code of ours has finished the merge when
it returns), and three clients then conclude it at the same moment, as the flow's wait, the
architect's CLI, reconciliation, an event-triggered resume and the generator can in production: the
end is the same as concluding once (no NODE_NOT_FOUND, nothing released twice, nothing leaked).
``make test`` proves the same race on a delivery and a decommission in the crash test
(tests/integration/test_crash_on_infrahub.py), and the per-step request counts of a delivery here.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import os
import socket
from collections.abc import Callable
from ipaddress import IPv4Interface
from typing import Any

import pytest
from infrahub_sdk import Config, InfrahubClient

from allocation import policy, runner
from allocation.backends.infrahub import InfrahubInventory
from allocation.errors import InventoryUnavailable, PortTaken, ServiceConflict, UnknownService
from allocation.intent import Bandwidth, IpPackage, ServiceStatus
from allocation.model import MAIN, ProposedChange
from allocation.settings import InfrahubSettings
from allocation.steps import Step, Work, allocate_gateway, allocate_resources
from allocation.steps import begin as begin_step
from allocation.steps import plan as plan_step
from tests import lifecycle
from tests.integration.conftest import (
    conclude_at_once,
    held,
    merge_in_infrahub,
    requires_infrahub,
    sdk_query,
)
from tests.support import request

pytestmark = [pytest.mark.integration, requires_infrahub]

SITE = "par01"

MAIN_VIEW = """
query Check($identifier: String!) {
  ServiceDedicatedInternet(service_identifier__value: $identifier) {
    edges { node {
      status { value }
      vlan { node { vlan_id { value } status { value } } }
      prefix { node { prefix { value } gateway { node { address { value } } } } }
      dedicated_interfaces { edges { node {
        __typename name { value } status { value } enabled { value }
        device { node { name { value } } }
        ... on DcimInterfaceL2 { l2_mode { value } untagged_vlan { node { vlan_id { value } } } }
        ... on DcimInterfaceL3 { vlan { node { vlan_id { value } } } ip_addresses { edges { node { address { value } } } } }
      } } }
    } }
  }
}
"""


async def main_view(identifier: str) -> dict[str, Any]:
    settings = InfrahubSettings()
    token = settings.api_token.get_secret_value() if settings.api_token else None
    client = InfrahubClient(address=settings.address, config=Config(api_token=token))
    data = await client.execute_graphql(
        query=MAIN_VIEW, variables={"identifier": identifier}, branch_name=MAIN
    )
    node: dict[str, Any] = data["ServiceDedicatedInternet"]["edges"][0]["node"]
    return node


LEFT_ON_MAIN = """
query Left($vlan: String!, $prefix: String!) {
  IpamVLAN(name__value: $vlan) { count }
  IpamPrefix(prefix__value: $prefix) { edges { node { service { node { id } } } } }
}
"""


async def counted_run(
    inventory: InfrahubInventory, identifier: str, transition: lifecycle.Transition
) -> tuple[ProposedChange | None, dict[str, int]]:
    """Run a transition up to its open proposed change: the change, and the requests each step sent."""
    requests: dict[str, int] = {}

    async def counting(step: Step, work: Work) -> Work:
        before = inventory.round_trips
        work = await step(work)
        requests[step.name] = inventory.round_trips - before
        return work

    work = await runner.run(Work(identifier, transition, inventory), execute=counting)
    return work.change, requests


# What a transition's steps cost on one client, in requests: every step after begin starts from what
# the previous step's write returned (the plan from the new branch as begin read main), and only
# opening the proposed change reads again.
DELIVERY_REQUESTS = {
    "begin": 2,
    "plan": 0,
    "allocate VLAN, prefix and port": 2,
    "allocate gateway": 1,
    "mark target status": 1,
    "open proposed change": 2,
    "conclude": 1,
}
DECOMMISSION_REQUESTS = {
    "begin": 2,
    "release gateway": 1,
    "release port": 1,
    "release prefix": 1,
    "release VLAN": 1,
    "mark target status": 1,
    "open proposed change": 2,
    "conclude": 1,
}


async def approve(
    inventory: InfrahubInventory, identifier: str, transition: lifecycle.Transition
) -> tuple[str, dict[str, int]]:
    """Merge the transition's change in Infrahub, then conclude it from three clients at once; the
    merged branch, and the requests each step sent before the merge."""
    change, requests = await counted_run(inventory, identifier, transition)
    assert change is not None
    await merge_in_infrahub(change.id)
    await conclude_at_once(inventory, identifier, transition, change.branch)
    return change.branch, requests


BRANCHES_AND_CHANGES = """
query Left($branches: [String]) {
  Branch { name }
  CoreProposedChange(source_branch__values: $branches) { edges { node { state { value } } } }
}
"""


@pytest.mark.slow  # two merges; make test concludes at once in the crash test's decommission
async def test_a_service_lives_and_dies_on_infrahub(
    infrahub: InfrahubInventory, new_id: Callable[[], str]
) -> None:
    identifier = new_id()
    await lifecycle.request_service(
        request(identifier, site=SITE, bandwidth=Bandwidth.G1, package=IpPackage.MEDIUM), infrahub
    )

    start = infrahub.round_trips
    delivered_on, requests = await approve(infrahub, identifier, lifecycle.DELIVER)
    assert requests == DELIVERY_REQUESTS
    delivered = await lifecycle.get_service(identifier, infrahub)
    impl = delivered.implementation
    assert delivered.status is ServiceStatus.ACTIVE and impl.complete
    assert impl.vlan and impl.prefix and impl.port and impl.gateway
    assert impl.prefix.prefixlen == 28 and impl.gateway.address == policy.gateway_address(impl.prefix)
    print(f"deliver: {infrahub.round_trips - start} round trips")

    view = await main_view(identifier)  # what Infrahub's own GraphQL shows on main
    assert view["status"]["value"] == "active"
    assert view["vlan"]["node"]["vlan_id"]["value"] == impl.vlan.vlan_id
    assert view["prefix"]["node"]["prefix"]["value"] == str(impl.prefix)
    assert view["prefix"]["node"]["gateway"]["node"]["address"]["value"] == str(impl.gateway.address)
    interfaces = {i["node"]["__typename"]: i["node"] for i in view["dedicated_interfaces"]["edges"]}
    port, gateway = interfaces["DcimInterfaceL2"], interfaces["DcimInterfaceL3"]
    assert (port["name"]["value"], port["status"]["value"], port["enabled"]["value"]) == (
        impl.port.port.name,
        "active",
        True,
    )
    assert port["l2_mode"]["value"] == "Access"
    assert port["untagged_vlan"]["node"]["vlan_id"]["value"] == impl.vlan.vlan_id
    assert gateway["name"]["value"] == policy.gateway_interface_name(impl.vlan.vlan_id)
    assert gateway["device"]["node"]["name"]["value"] == impl.gateway.device
    assert gateway["vlan"]["node"]["vlan_id"]["value"] == impl.vlan.vlan_id
    assert (
        IPv4Interface(gateway["ip_addresses"]["edges"][0]["node"]["address"]["value"]) == impl.gateway.address
    )

    # One VLAN ID, one /28 and one port, each recorded once for every branch, as main's.
    records = await held(identifier)
    assert records == {
        f"vlan:{impl.vlan.l2domain}:{impl.vlan.vlan_id}": ("main", None),
        f"prefix:{impl.prefix}": ("main", None),
        f"port:{impl.port.port.id}": ("main", None),
    }

    # A rerun of a finished transition changes nothing.
    assert await lifecycle.prepare(identifier, lifecycle.DELIVER, infrahub) is None
    assert await held(identifier) == records
    assert await main_view(identifier) == view

    start = infrahub.round_trips
    decommissioned_on, requests = await approve(infrahub, identifier, lifecycle.DECOMMISSION)
    assert requests == DECOMMISSION_REQUESTS
    print(f"decommission: {infrahub.round_trips - start} round trips")
    gone = await lifecycle.get_service(identifier, infrahub)
    assert gone.status is ServiceStatus.DECOMMISSIONED and gone.implementation.empty
    view = await main_view(identifier)
    assert view["vlan"]["node"] is None and view["prefix"]["node"] is None
    assert view["dedicated_interfaces"]["edges"] == []
    assert await held(identifier) == {}  # the VLAN ID, the prefix and the port are back
    left = await sdk_query(LEFT_ON_MAIN, {"vlan": f"vlan__{identifier}", "prefix": str(impl.prefix)})
    assert left["IpamVLAN"]["count"] == 0
    assert all(p["node"]["service"]["node"] is None for p in left["IpamPrefix"]["edges"])  # not ours
    branches = [delivered_on, decommissioned_on]
    found = await sdk_query(BRANCHES_AND_CHANGES, {"branches": branches})
    assert decommissioned_on not in {b["name"] for b in found["Branch"]}  # deleted once given back
    assert [c["node"]["state"]["value"] for c in found["CoreProposedChange"]["edges"]] == ["merged"] * 2
    assert await lifecycle.prepare(identifier, lifecycle.DECOMMISSION, infrahub) is None


async def test_rerunning_a_delivery_before_review_changes_nothing(
    infrahub: InfrahubInventory, new_id: Callable[[], str]
) -> None:
    identifier = new_id()
    await lifecycle.request_service(request(identifier, site=SITE), infrahub)
    first = await lifecycle.prepare(identifier, lifecycle.DELIVER, infrahub)
    assert first is not None
    branch = first.branch
    allocated = (await lifecycle.get_service(identifier, infrahub, branch)).implementation
    records = await held(identifier)
    assert len(records) == 3 and {c for c, _ in records.values()} == {branch}  # claimed on the branch

    start = infrahub.round_trips
    again = await lifecycle.prepare(identifier, lifecycle.DELIVER, infrahub)
    print(f"prepare again: {infrahub.round_trips - start} round trips")
    assert again is not None and again.id == first.id
    assert (await lifecycle.get_service(identifier, infrahub, branch)).implementation == allocated
    assert await held(identifier) == records

    # A retried write whose first attempt landed after the client stopped waiting (a timeout under
    # load): the retry read the branch before the gateway's address was there, so it creates it again.
    read = await infrahub._require(identifier, branch)
    stale = copy.deepcopy(read.node)
    assert stale is not None
    for interface in stale["dedicated_interfaces"]["edges"]:
        interface["node"].pop("ip_addresses", None)
    reads = iter([dataclasses.replace(read, node=stale)])
    real_require = infrahub._require

    async def stale_once(identifier: str, branch: str) -> Any:
        return next(reads, None) or await real_require(identifier, branch)

    gateway = allocated.gateway
    assert gateway is not None and allocated.vlan is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(infrahub, "_require", stale_once)
        again_gateway = await infrahub.ensure_gateway(
            identifier, device=gateway.device, vlan=allocated.vlan, address=gateway.address, branch=branch
        )
    assert again_gateway == gateway
    assert (await lifecycle.get_service(identifier, infrahub, branch)).implementation == allocated

    # Rejected: everything the branch took goes back at once.
    await infrahub.close_proposed_change(first.id)
    assert (
        await lifecycle.conclude(identifier, lifecycle.DELIVER, infrahub, branch)
        is lifecycle.Outcome.REJECTED
    )
    assert (await lifecycle.get_service(identifier, infrahub)).status is ServiceStatus.DRAFT
    assert await held(identifier) == {}
    assert (await lifecycle.get_service(identifier, infrahub, branch)).implementation.empty


def _as_read(view: Any) -> tuple[Any, list[Any]]:
    """The service node and its reservations behind a planning view (the backend's handle)."""
    return view.handle.node, sorted(view.handle.records, key=lambda r: r["id"])


async def test_each_step_starts_from_what_the_last_write_returned_as_infrahub_holds_it(
    infrahub: InfrahubInventory, new_id: Callable[[], str]
) -> None:
    """A delivery on one client: each allocation step's write returns the service, and the next step
    starts from that without a request. What it starts from is what another client reads."""
    identifier = new_id()
    await lifecycle.request_service(request(identifier, site=SITE), infrahub)
    other = InfrahubInventory.from_settings(InfrahubSettings())
    requests: dict[str, int] = {}

    async def counting_and_comparing(step: Step, work: Work) -> Work:
        before = infrahub.round_trips
        work = await step(work)
        requests[step.name] = infrahub.round_trips - before
        if step.name.startswith("allocate"):
            before = infrahub.round_trips
            mine = await infrahub.planning_view(identifier, work.on_branch, site=SITE)
            assert infrahub.round_trips == before  # the next step's read: none
            theirs = await other.planning_view(identifier, work.on_branch, site=SITE)
            assert mine.service == theirs.service, step.name
            assert _as_read(mine) == _as_read(theirs), step.name
        return work

    try:
        work = await runner.run(Work(identifier, lifecycle.DELIVER, infrahub), execute=counting_and_comparing)
        assert requests == DELIVERY_REQUESTS
        assert work.change is not None

        # The steps once more, as a retried task would: everything is in place, and only the plan reads.
        before = infrahub.round_trips
        again = dataclasses.replace(work, change=None)
        for step in lifecycle.DELIVER.steps:
            again = await step(again)
        assert infrahub.round_trips - before == 1
        assert (again.vlan, again.prefix, again.port) == (work.vlan, work.prefix, work.port)
        delivered = (await lifecycle.get_service(identifier, other, work.on_branch)).implementation
        assert delivered.complete and delivered.port == work.port and delivered.vlan == work.vlan
        await infrahub.close_proposed_change(work.change.id)
        assert (
            await lifecycle.conclude(identifier, lifecycle.DELIVER, infrahub, work.on_branch)
            is lifecycle.Outcome.REJECTED
        )
        assert await held(identifier) == {}
    finally:
        await other.close()


async def test_a_step_after_another_clients_write_still_ends_right(
    infrahub: InfrahubInventory, new_id: Callable[[], str]
) -> None:
    """Between the plan and the allocation, another client takes the port the plan chose: the
    allocation's claim is refused, it reads Infrahub once and takes another port; the VLAN and prefix
    its refused write took stay the service's, recorded once."""
    identifier, rival = new_id(), new_id()
    await lifecycle.request_service(request(identifier, site=SITE), infrahub)
    other = InfrahubInventory.from_settings(InfrahubSettings())
    rival_branch = policy.branch_name(rival, "deliver")
    work = Work(identifier, lifecycle.DELIVER, infrahub)
    try:
        for step in (begin_step, plan_step):
            work = await step(work)
        wanted = work.planned.port  # what the plan's view, handed to the next step, offers

        await other.create_service(request(rival, site=SITE))
        await other.create_branch(rival_branch)
        site = await other.get_site(SITE)
        vlan = await other.ensure_vlan(
            rival, pool=site.vlan_pool, l2domain=site.l2domain, branch=rival_branch
        )
        await other.claim_port(rival, port=wanted, vlan=vlan, branch=rival_branch)

        before = infrahub.operations
        work = await allocate_resources(work)
        assert work.port is not None and work.port.port.id != wanted.id
        read_again = {k: v - before.get(k, 0) for k, v in infrahub.operations.items()}
        assert read_again.get("query View") == 1  # after the refused claim: Infrahub, not memory
        work = await allocate_gateway(work)

        mine, theirs = await held(identifier), await held(rival)
        assert f"port:{work.port.port.id}" in mine and f"port:{wanted.id}" not in mine
        assert f"port:{wanted.id}" in theirs
        assert work.vlan is not None and work.prefix is not None
        assert sorted(mine) == sorted(
            [
                f"port:{work.port.port.id}",
                f"prefix:{work.prefix}",
                f"vlan:{work.vlan.l2domain}:{work.vlan.vlan_id}",
            ]
        )
        delivered = (await lifecycle.get_service(identifier, other, work.on_branch)).implementation
        assert delivered.complete and delivered.port == work.port
    finally:
        if work.branch is not None:
            await infrahub.discard_changes(identifier, branch=work.branch)
        with contextlib.suppress(UnknownService, ServiceConflict):  # when it failed before its branch
            await other.discard_changes(rival, branch=rival_branch)
        await other.close()


async def test_two_clients_racing_for_one_port_cannot_both_win(new_id: Callable[[], str]) -> None:
    inventories = [InfrahubInventory.from_settings(InfrahubSettings()) for _ in range(2)]
    identifiers = [new_id(), new_id()]
    branches = [policy.branch_name(i, "deliver") for i in identifiers]
    try:
        site = await inventories[0].get_site(SITE)
        vlans = []
        for inventory, identifier, branch in zip(inventories, identifiers, branches, strict=True):
            await inventory.create_service(request(identifier, site=SITE))
            await inventory.create_branch(branch)
            vlans.append(
                await inventory.ensure_vlan(
                    identifier, pool=site.vlan_pool, l2domain=site.l2domain, branch=branch
                )
            )
        port = (await inventories[0].free_ports(SITE, 1000))[0]
        results = await asyncio.gather(
            *(
                inventory.claim_port(identifier, port=port, vlan=vlan, branch=branch)
                for inventory, identifier, vlan, branch in zip(
                    inventories, identifiers, vlans, branches, strict=True
                )
            ),
            return_exceptions=True,
        )
        assert sum(isinstance(r, PortTaken) for r in results) == 1, results
        assert sum(not isinstance(r, BaseException) for r in results) == 1, results
    finally:
        for inventory, identifier, branch in zip(inventories, identifiers, branches, strict=True):
            await inventory.discard_changes(identifier, branch=branch)
            await inventory.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_infrahub_is_reported_as_unavailable() -> None:
    address = f"http://127.0.0.1:{_closed_port()}"
    inventory = InfrahubInventory(address, os.environ.get("INFRAHUB_API_TOKEN"), timeout=5)
    try:
        with pytest.raises(InventoryUnavailable, match=f"Infrahub at {address} is unreachable"):
            await inventory.get_site(SITE)
        with pytest.raises(InventoryUnavailable):
            await inventory.create_branch("never-created")
    finally:
        await inventory.close()
