"""What Infrahub does with this commit registered as a repository (once for the module, the
worker clones it from a local bare repository): it runs the generator in a proposed change's
pipeline, renders the configuration artifacts of every device a service touches and their diff in a
proposed change, and runs the service review check that keeps a bad branch from merging.

In CI: the generator in a proposed change and a hand-broken branch refused (one registration, two
pipelines, no merge). Under `make test-slow`: the architect's whole review of one service (delivery,
an edit after opening caught, re-open, modify, decommission: three merges). The same rules one by
one, fast, on the embedded backend: tests/unit/test_merge_checks.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from ipaddress import IPv4Network
from typing import Any

import pytest

from allocation import core, policy, review, runner
from allocation.backends.infrahub import InfrahubInventory
from allocation.backends.infrahub import mutations as m
from allocation.config import render_configs
from allocation.errors import ChangeRefused
from allocation.intent import Bandwidth, IpPackage, ServiceStatus
from allocation.model import MAIN, ChangeState
from tests import lifecycle
from tests.integration.conftest import held, pool_and_port_usage, requires_infrahub, sdk_query
from tests.integration.review_support import (
    CHECK,
    artifact,
    artifact_diff,
    delete_branch,
    merge_in_infrahub,
    pipeline,
    registered,
    request_checks,
    stanzas,
)
from tests.support import request

pytestmark = [pytest.mark.integration, requires_infrahub]

SITE = "par01"

IMPLEMENTATION_IDS = """
query Ids($identifier: String!) {
  ServiceDedicatedInternet(service_identifier__value: $identifier) { edges { node {
    id
    vlan { node { id } }
    prefix { node { id } }
    dedicated_interfaces { edges { node {
      id __typename
      ... on DcimInterfaceL3 { ip_addresses { edges { node { id } } } }
    } } }
  } } }
}
"""


@pytest.fixture(scope="module")
async def repository(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    workdir = tmp_path_factory.mktemp("repository")
    async with registered(workdir, f"service-factory-review-{int(time.time()) % 100000}") as found:
        yield found


async def ids_of(identifier: str, branch: str) -> dict[str, Any]:
    data = await sdk_query(IMPLEMENTATION_IDS, {"identifier": identifier}, branch)
    node = data["ServiceDedicatedInternet"]["edges"][0]["node"]
    interfaces = [e["node"] for e in node["dedicated_interfaces"]["edges"]]
    l2 = next(i for i in interfaces if i["__typename"] == "DcimInterfaceL2")
    l3 = next(i for i in interfaces if i["__typename"] == "DcimInterfaceL3")
    return {
        "service": node["id"],
        "vlan": node["vlan"]["node"]["id"],
        "prefix": node["prefix"]["node"]["id"],
        "port": l2["id"],
        "address": l3["ip_addresses"]["edges"][0]["node"]["id"],
    }


async def hand_edit(branch: str, ops: list[m.Op]) -> None:
    """Edits an operator makes in Infrahub's UI: plain mutations on the branch, no factory in between."""
    text, variables = m.document(ops)
    await sdk_query(text, variables, branch)


def free(port: str) -> m.Op:
    return m.update(
        "DcimInterfaceL2",
        {
            "id": port,
            "service": None,
            "untagged_vlan": None,
            "status": m.attr("free"),
            "enabled": m.attr(False),
            "l2_mode": m.attr(None),
        },
    )


def take(port: str, service: str, vlan: str) -> m.Op:
    return m.update(
        "DcimInterfaceL2",
        {
            "id": port,
            "service": m.ref(service),
            "untagged_vlan": m.ref(vlan),
            "status": m.attr("active"),
            "enabled": m.attr(True),
            "l2_mode": m.attr("Access"),
        },
    )


# Slow: three merges and a modify's pipeline, about 6 minutes on a quiet 2-core stack.
@pytest.mark.slow
async def test_the_architect_reviews_configuration_and_an_edit_after_opening_is_caught(
    repository: str, infrahub: InfrahubInventory, new_id: Callable[[], str]
) -> None:
    identifier = new_id()
    before = await pool_and_port_usage(infrahub, SITE)
    await lifecycle.request_service(
        request(identifier, site=SITE, bandwidth=Bandwidth.G1, package=IpPackage.SMALL, account="ACC-77"),
        infrahub,
    )
    opened = time.monotonic()
    change = await lifecycle.prepare(identifier, lifecycle.DELIVER, infrahub)
    assert change is not None
    found = await pipeline(change.id)
    print(
        f"\ndeliver {identifier}: pipeline finished {time.monotonic() - opened:.0f}s after the change opened"
    )
    assert found[CHECK].conclusion == "success", found[CHECK]

    # The configuration the change proposes, rendered by Infrahub from the branch: the same stanzas
    # the embedded path renders for the service, inside each device's whole configuration.
    proposed = await lifecycle.get_service(identifier, infrahub, change.branch)
    port, gateway, vlan = (
        proposed.implementation.port,
        proposed.implementation.gateway,
        proposed.implementation.vlan,
    )
    assert port and gateway and vlan and proposed.implementation.prefix
    configs = render_configs(proposed)
    switch = await artifact(change.branch, port.port.device)
    router = await artifact(change.branch, gateway.device)
    print(switch, router, sep="\n")
    for block in stanzas(configs[port.port.device]):
        assert block in switch
    assert f"interface {port.port.name}\n   description {identifier} | ACC-77 | 1000 Mbit/s\n" in switch
    allowed = next(line for line in switch.splitlines() if "switchport trunk allowed vlan" in line)
    assert str(vlan.vlan_id) in allowed.split()[-1].split(",")
    for block in stanzas(configs[gateway.device]):
        assert block in router
    assert f"   ip address {gateway.address}\n" in router
    assert {port.port.device, gateway.device} <= set(await artifact_diff(change.branch))

    # Edited by hand after it was opened: the gateway moved to another address of the prefix.
    moved = f"{list(proposed.implementation.prefix.hosts())[4]}/{proposed.implementation.prefix.prefixlen}"
    ids = await ids_of(identifier, change.branch)
    await hand_edit(
        change.branch, [m.update("IpamIPAddress", {"id": ids["address"], "address": m.attr(moved)})]
    )
    with pytest.raises(ChangeRefused) as refused:
        await infrahub.merge_proposed_change(change.id)
    assert (
        f"{identifier}: gateway {moved} is not the first usable host of {proposed.implementation.prefix} "
        in (str(refused.value))
    )
    assert any(v.startswith(f"{identifier} is not as reviewed (plan ") for v in refused.value.violations)
    # Infrahub's own check, run again as the architect asks for it, fails with the same messages, and
    # Infrahub refuses the merge while it does.
    asked = await request_checks(change.id)
    found = await pipeline(change.id, after=asked)
    assert found[CHECK].conclusion == "failure"
    assert sorted(found[CHECK].messages) == sorted(refused.value.violations)
    assert await merge_in_infrahub(change.id) == "open"
    on_main = await lifecycle.get_service(identifier, infrahub)
    assert on_main.status is ServiceStatus.IN_DELIVERY and on_main.implementation.empty

    # Re-opened (the steps put the gateway back, the plan is recorded again from the branch): the
    # checks run again and pass. The steps rebuild the same implementation, so the plan is the same.
    result = await runner.reopen(identifier, infrahub)
    assert result.proposed_change == change.id
    reopened = await infrahub.get_proposed_change(change.branch)
    recorded = review.parse(reopened.description) if reopened else None
    restored = await lifecycle.get_service(identifier, infrahub, change.branch)
    assert restored.implementation.gateway == gateway
    assert recorded and recorded.intact and recorded == review.parse(change.description)
    merged = await infrahub.merge_proposed_change(change.id)
    assert merged.state is ChangeState.MERGED
    assert await lifecycle.conclude(identifier, lifecycle.DELIVER, infrahub, change.branch) is (
        lifecycle.Outcome.DONE  # and what reached main is what was reviewed
    )
    active = await lifecycle.get_service(identifier, infrahub)
    assert active.status is ServiceStatus.ACTIVE and active.implementation.gateway == gateway

    # A modify: the larger prefix changes the router's configuration in the modify's change.
    modify = await lifecycle.prepare(identifier, lifecycle.MODIFY, infrahub, ip_package=IpPackage.LARGE)
    assert modify is not None
    try:
        opened = time.monotonic()
        assert (await pipeline(modify.id))[CHECK].conclusion == "success"
        print(
            f"modify {identifier}: pipeline finished {time.monotonic() - opened:.0f}s after the change opened"
        )
        larger = (await lifecycle.get_service(identifier, infrahub, modify.branch)).implementation.gateway
        assert larger and larger.address.network.prefixlen == 27
        changed = await artifact_diff(modify.branch)
        assert gateway.device in changed and port.port.device not in changed, changed
        router_then = await artifact(MAIN, gateway.device)
        router_now = await artifact(modify.branch, gateway.device)
        assert (
            f"   ip address {larger.address}\n" in router_now
            and f"   ip address {gateway.address}\n" not in router_now
        )
        assert f"   ip address {gateway.address}\n" in router_then  # main: still the delivered one
    finally:
        await infrahub.close_proposed_change(modify.id)
        assert await lifecycle.conclude(identifier, lifecycle.MODIFY, infrahub, modify.branch) is (
            lifecycle.Outcome.REJECTED
        )

    retire = await lifecycle.prepare(identifier, lifecycle.DECOMMISSION, infrahub)
    assert retire is not None
    await infrahub.merge_proposed_change(retire.id)
    assert await lifecycle.conclude(identifier, lifecycle.DECOMMISSION, infrahub, retire.branch) is (
        lifecycle.Outcome.DONE
    )
    assert await pool_and_port_usage(infrahub, SITE) == before


async def test_a_branch_broken_by_hand_fails_its_check_and_infrahub_refuses_to_merge_it(
    repository: str, infrahub: InfrahubInventory, new_id: Callable[[], str]
) -> None:
    fast, slow = new_id(), new_id()
    branch = f"hand-{fast.lower()}"
    before = await pool_and_port_usage(infrahub, SITE)
    await lifecycle.request_service(
        request(fast, site=SITE, bandwidth=Bandwidth.G10, package=IpPackage.SMALL), infrahub
    )
    await lifecycle.request_service(
        request(slow, site=SITE, bandwidth=Bandwidth.G1, package=IpPackage.MEDIUM), infrahub
    )
    await infrahub.create_branch(branch)
    change_id: str | None = None
    try:
        for identifier in (fast, slow):
            service = await lifecycle.get_service(identifier, infrahub, branch)
            await core.apply(await core.plan(service.as_request(), infrahub, branch), infrahub, branch)
            await infrahub.update_service(identifier, branch, status=ServiceStatus.ACTIVE)
        allocated = {
            s: (await lifecycle.get_service(s, infrahub, branch)).implementation for s in (fast, slow)
        }
        first, second = allocated[fast], allocated[slow]
        assert first.port and first.vlan and second.vlan and second.gateway
        elsewhere = (await infrahub.free_ports("bru01", 100))[0]  # a 1G port of another site
        bru = await sdk_query(
            """query P($d: String!, $n: String!) {
                 DcimInterfaceL2(device__name__value: $d, name__value: $n) { edges { node { id } } } }""",
            {"d": elsewhere.device, "n": elsewhere.name},
            branch,
        )
        a, b = await ids_of(fast, branch), await ids_of(slow, branch)
        wrong = f"192.0.2.{8 * (int(fast.rsplit('-', 1)[1]) % 32)}/29"
        await hand_edit(
            branch,
            [
                # the 10G service onto a 1G port of another site, its gateway address removed
                free(a["port"]),
                take(bru["DcimInterfaceL2"]["edges"][0]["node"]["id"], a["service"], a["vlan"]),
                m.delete("IpamIPAddress", a["address"]),
                # the medium service onto the port the first one holds, with the first one's VLAN,
                # a /29 outside the pool, and decommissioned while it holds all that
                free(b["port"]),
                take(a["port"], b["service"], a["vlan"]),
                m.update("IpamPrefix", {"id": b["prefix"], "prefix": m.attr(wrong)}),
                m.update(
                    "ServiceDedicatedInternet", {"id": b["service"], "status": m.attr("decommissioned")}
                ),
            ],
        )
        services = [await lifecycle.get_service(s, infrahub, branch) for s in (fast, slow)]
        change = await infrahub.open_proposed_change(
            branch, f"Hand-made change of {fast} and {slow}", "Edited by hand.\n\n" + review.record(services)
        )
        change_id = change.id
        opened = time.monotonic()
        found = await pipeline(change.id)
        print(f"\n{branch}: pipeline finished {time.monotonic() - opened:.0f}s after the change opened")
        print("\n".join(found[CHECK].messages))
        assert found[CHECK].conclusion == "failure"
        port = first.port.port
        expected = [
            f"{fast}: port {elsewhere.device} {elsewhere.name} is not on a core switch of {SITE} (sw01-{SITE}, sw02-{SITE})",
            f"{fast}: port {elsewhere.device} {elsewhere.name} runs at 1000 Mbit/s, slower than the 10000 Mbit/s ordered",
            f"{fast} is active without a gateway",
            f"{slow}: port {port.device} {port.name} is also held by {fast}",
            f"{slow}: prefix {wrong} is a /29; the medium package gets a /28",
            f"{slow}: gateway {second.gateway.address} is not the first usable host of {wrong} "
            f"({next(IPv4Network(wrong).hosts())}/29)",
            f"{slow}: port and gateway are not on one VLAN (its VLAN {second.vlan.vlan_id}, access VLAN "
            f"{first.vlan.vlan_id} on the port, gateway interface {second.gateway.interface} on VLAN "
            f"{second.vlan.vlan_id})",
            f"{slow} is decommissioned but still holds its VLAN, prefix, port and gateway",
        ]
        if second.gateway.device != f"rb0{port.device_index}-{SITE}":
            expected.append(
                f"{slow}: gateway on {second.gateway.device}, but port {port.device} {port.name} pairs with "
                f"rb0{port.device_index}-{SITE}"
            )
        for message in expected:
            assert message in found[CHECK].messages
        assert any(
            v.startswith(f"{slow}: prefix {wrong} is not inside the pool ") for v in found[CHECK].messages
        )

        with pytest.raises(ChangeRefused) as refused:
            await infrahub.merge_proposed_change(change.id)
        assert sorted(refused.value.violations) == sorted(found[CHECK].messages)  # the same check
        assert await merge_in_infrahub(change.id) == "open"  # Infrahub's own refusal
        for identifier in (fast, slow):
            on_main = await lifecycle.get_service(identifier, infrahub)
            assert on_main.status is ServiceStatus.DRAFT and on_main.implementation.empty
    finally:
        if change_id is not None:
            await infrahub.close_proposed_change(change_id)
        for identifier in (fast, slow):
            await infrahub.discard_changes(identifier, branch=branch)
        await delete_branch(branch)
    assert await pool_and_port_usage(infrahub, SITE) == before


# Infrahub itself runs the generator from this repository in a proposed change's pipeline.

VALIDATORS = """
query Validators($id: ID!) {
  CoreProposedChange(ids: [$id]) { edges { node {
    validations { edges { node { display_label state { value } conclusion { value } } } }
  } } }
}
"""


async def test_infrahub_runs_the_generator_in_a_proposed_change(
    repository: str, infrahub: InfrahubInventory, new_id: Callable[[], str]
) -> None:
    identifier = new_id()
    branch = f"gen-pc-{identifier.lower()}"
    change_id: str | None = None
    try:
        # A draft service, a member of the generator's target group on its branch only.
        await lifecycle.request_service(
            request(identifier, site=SITE, bandwidth=Bandwidth.G1, package=IpPackage.SMALL), infrahub
        )
        await infrahub.create_branch(branch)
        service = await lifecycle.get_service(identifier, infrahub, branch)
        plan = await core.plan(service.as_request(), infrahub, branch)
        ids = await sdk_query(
            """query Ids($identifier: String!) {
                 ServiceDedicatedInternet(service_identifier__value: $identifier) { edges { node { id } } }
                 CoreStandardGroup(name__value: "automated_dedicated_internet") { edges { node { id } } }
               }""",
            {"identifier": identifier},
            branch,
        )
        await sdk_query(
            """mutation Join($group: String!, $member: String!) {
                 RelationshipAdd(data: {id: $group, name: "members", nodes: [{id: $member}]}) { ok }
               }""",
            {
                "group": ids["CoreStandardGroup"]["edges"][0]["node"]["id"],
                "member": ids["ServiceDedicatedInternet"]["edges"][0]["node"]["id"],
            },
            branch,
        )
        change = await infrahub.open_proposed_change(branch, f"Implement {identifier}", "generator pipeline")
        change_id = change.id

        async with asyncio.timeout(420):  # the pipeline: diff, schema and data checks, generators
            while True:
                data = await sdk_query(VALIDATORS, {"id": change.id})
                validators = {
                    v["node"]["display_label"]: (
                        v["node"]["state"]["value"],
                        v["node"]["conclusion"]["value"],
                    )
                    for v in data["CoreProposedChange"]["edges"][0]["node"]["validations"]["edges"]
                }
                generator = validators.get("Generator Validator: dedicated_internet")
                if generator is not None and generator[0] == "completed":
                    break
                await asyncio.sleep(3)
        print(validators)
        assert generator == ("completed", "success"), validators

        impl = (await lifecycle.get_service(identifier, infrahub, branch)).implementation
        assert impl.complete and impl.port and impl.prefix and impl.gateway
        assert impl.port.port == plan.port and impl.gateway.device == plan.router.name
        assert impl.prefix.prefixlen == plan.prefix_length == 29
        assert impl.gateway.address == policy.gateway_address(impl.prefix)
        assert (await lifecycle.get_service(identifier, infrahub)).implementation.empty  # main untouched
    finally:
        if change_id is not None:
            await infrahub.close_proposed_change(change_id)
        if await infrahub.get_service(identifier, MAIN) is not None:
            await infrahub.discard_changes(identifier, branch=branch)
    assert await held(identifier) == {}
