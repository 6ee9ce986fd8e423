"""The Dedicated Internet generator run by ``infrahubctl`` against a live Infrahub.

``infrahubctl generator dedicated_internet --branch B service_identifier=ID`` runs the generator of
``.infrahub.yml`` from this repository for that one service (with a parameter the CLI queries the
service directly: no group membership needed). The generator must implement what ``core.plan``
predicts, change nothing when run again, and change nothing on a branch the deliver steps already
allocated: the generator and the flows are one core.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from allocation import core, policy
from allocation.backends.infrahub import InfrahubInventory
from allocation.intent import Bandwidth, IpPackage, ServiceStatus
from allocation.model import MAIN
from tests import lifecycle
from tests.integration.conftest import held, requires_infrahub, sdk_query
from tests.support import ROOT, request

pytestmark = [pytest.mark.integration, requires_infrahub]

SITE = "par01"
INFRAHUBCTL = Path(sys.executable).parent / "infrahubctl"

# Everything the generator could write on the branch, with the time each attribute last changed:
# a run that writes nothing leaves this view exactly as it was.
BRANCH_VIEW = """
query Implementation($identifier: String!) {
  ServiceDedicatedInternet(service_identifier__value: $identifier) {
    edges { node {
      status { value updated_at }
      vlan { node { id vlan_id { value updated_at } status { value updated_at } } }
      prefix { node { id prefix { value updated_at } gateway { node { id } } } }
      gateway_ip_address { node { id address { value updated_at } } }
      dedicated_interfaces { edges { node {
        id __typename name { value } status { value updated_at } enabled { value updated_at }
        description { value updated_at }
        ... on DcimInterfaceL2 { l2_mode { value updated_at } untagged_vlan { node { id } } }
        ... on DcimInterfaceL3 { vlan { node { id } } ip_addresses { edges { node { id } } } }
      } } }
    } }
  }
}
"""


# The generator's tracking group that holds the service's VLAN (one per service: its name carries a
# hash of the run's parameters).
GENERATOR_GROUPS = """
query Groups($vlan: ID!) {
  CoreGeneratorAwareGroup(members__ids: [$vlan]) { edges { node { members { edges { node { id } } } } } }
}
"""


async def run_generator(branch: str, identifier: str, site: str | None = None) -> str:
    """``infrahubctl generator`` as a user runs it from the repository root; returns its output. With
    ``site``, the parameters Infrahub's pipeline passes; without, a hand-run's (every site's port
    claims are read)."""
    process = await asyncio.create_subprocess_exec(
        str(INFRAHUBCTL),
        "generator",
        "dedicated_internet",
        "--branch",
        branch,
        f"service_identifier={identifier}",
        *([f"site={site}"] if site else []),
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "250"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode()
    assert process.returncode == 0, text
    return text


async def branch_view(identifier: str, branch: str) -> dict[str, Any]:
    data = await sdk_query(BRANCH_VIEW, {"identifier": identifier}, branch)
    node: dict[str, Any] = data["ServiceDedicatedInternet"]["edges"][0]["node"]
    return node


async def test_the_generator_implements_what_the_plan_predicts(
    infrahub: InfrahubInventory, new_id: Callable[[], str]
) -> None:
    identifier = new_id()
    branch = f"gen-{identifier.lower()}"
    await lifecycle.request_service(
        request(identifier, site=SITE, bandwidth=Bandwidth.G1, package=IpPackage.MEDIUM), infrahub
    )
    await infrahub.create_branch(branch)
    service = await lifecycle.get_service(identifier, infrahub, branch)
    plan = await core.plan(service.as_request(), infrahub, branch)
    try:
        # On main the generator refuses: allocation only happens on a branch under review.
        output = await run_generator(MAIN, identifier)
        assert "never on main" in output, output
        assert await held(identifier) == {}

        output = await run_generator(branch, identifier, site=SITE)  # as Infrahub's pipeline runs it
        print(output)
        impl = (await lifecycle.get_service(identifier, infrahub, branch)).implementation
        assert impl.complete
        assert impl.vlan and impl.prefix and impl.port and impl.gateway
        assert impl.port.port == plan.port  # the same switch and port the plan chose
        assert impl.gateway.device == plan.router.name  # the edge router with the switch's index
        assert impl.prefix.prefixlen == plan.prefix_length == 28
        assert impl.gateway.address == policy.gateway_address(impl.prefix)  # first host
        assert f"VLAN {impl.vlan.vlan_id}, {impl.prefix}, {plan.port.device} {plan.port.name}" in output
        view = await branch_view(identifier, branch)
        assert (
            view["status"]["value"] == ServiceStatus.DRAFT.value
        )  # the lifecycle sets status, not the generator
        assert (await lifecycle.get_service(identifier, infrahub)).implementation.empty  # main untouched
        records = await held(identifier)  # one VLAN ID, one /28, one port, claimed on the branch
        assert records == {
            f"vlan:{impl.vlan.l2domain}:{impl.vlan.vlan_id}": (branch, None),
            f"prefix:{impl.prefix}": (branch, None),
            f"port:{impl.port.port.id}": (branch, None),
        }
        # Infrahub knows what the generator made: the SDK's tracking group of this run holds the VLAN,
        # the prefix and the gateway's interface and address, and nothing else (not the port it only
        # configured).
        groups = await sdk_query(GENERATOR_GROUPS, {"vlan": view["vlan"]["node"]["id"]}, branch)
        members = {
            m["node"]["id"]
            for g in groups["CoreGeneratorAwareGroup"]["edges"]
            for m in g["node"]["members"]["edges"]
        }
        gateway = next(
            i["node"]
            for i in view["dedicated_interfaces"]["edges"]
            if i["node"]["__typename"] == "DcimInterfaceL3"
        )
        assert members == {
            view["vlan"]["node"]["id"],
            view["prefix"]["node"]["id"],
            gateway["id"],
            gateway["ip_addresses"]["edges"][0]["node"]["id"],
        }

        # Again, as by hand (no site: every site's claims): nothing written (every attribute keeps its
        # last change time), nothing allocated.
        await run_generator(branch, identifier)
        assert (await lifecycle.get_service(identifier, infrahub, branch)).implementation == impl
        assert await branch_view(identifier, branch) == view
        assert await held(identifier) == records
    finally:
        await infrahub.discard_changes(identifier, branch=branch)
    assert await held(identifier) == {}


async def test_the_generator_agrees_with_the_delivery_steps(
    infrahub: InfrahubInventory, new_id: Callable[[], str]
) -> None:
    identifier = new_id()
    await lifecycle.request_service(
        request(identifier, site=SITE, bandwidth=Bandwidth.G1, package=IpPackage.SMALL), infrahub
    )
    change = await lifecycle.prepare(identifier, lifecycle.DELIVER, infrahub)  # allocated, under review
    assert change is not None
    try:
        allocated = (await lifecycle.get_service(identifier, infrahub, change.branch)).implementation
        assert allocated.complete and allocated.prefix and allocated.prefix.prefixlen == 29
        view = await branch_view(identifier, change.branch)
        records = await held(identifier)

        output = await run_generator(change.branch, identifier)
        print(output)
        assert str(allocated.prefix) in output
        assert (await lifecycle.get_service(identifier, infrahub, change.branch)).implementation == allocated
        assert await branch_view(identifier, change.branch) == view
        assert await held(identifier) == records
    finally:
        await infrahub.close_proposed_change(change.id)
        outcome = await lifecycle.conclude(identifier, lifecycle.DELIVER, infrahub, change.branch)
    assert outcome is lifecycle.Outcome.REJECTED
    assert (await lifecycle.get_service(identifier, infrahub)).status is ServiceStatus.DRAFT
    assert await held(identifier) == {}
    assert isinstance(allocated.prefix, IPv4Network)
