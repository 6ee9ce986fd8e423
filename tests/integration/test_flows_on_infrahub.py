"""The whole life of a service through the Prefect flows, against a live Infrahub.

The flows run under a Prefect test harness with ``FACTORY_BACKEND=infrahub``: the deliver flow
allocates on its branch and opens a proposed change, an architect merges it through Infrahub's API,
and the decommission flow gives everything back the same way. What Infrahub holds is read with
Infrahub's own GraphQL through a plain SDK client. Each merge runs as an Infrahub task (30-50 s on
the CI machine), so this module merges exactly twice, under ``make test-slow``. ``make test`` runs
the deliver flow on Infrahub in the shape it is used (tests/deployed/test_lifecycle_on_infrahub.py:
a Prefect server, a worker, Infrahub's webhooks) and a decommission on Infrahub through the same
runner the flows wrap (tests/integration/test_crash_on_infrahub.py); every flow runs under the
harness on the embedded inventory (tests/flows).
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import time
from collections.abc import Callable
from ipaddress import IPv4Interface, IPv4Network
from typing import Any

import pytest

from allocation import policy
from allocation.backends.infrahub import InfrahubInventory
from allocation.intent import Bandwidth, IpPackage, ServiceStatus
from allocation.results import Outcome
from tests.flows.conftest import request_service, run_transition
from tests.integration.conftest import pool_and_port_usage, requires_infrahub, sdk_query
from tests.support import request

pytestmark = [pytest.mark.integration, requires_infrahub]

SITE = "par01"

# Merges take tens of seconds on Infrahub: give the review room.
REVIEW = 600

SERVICE = """
query Service($identifier: String!) {
  ServiceDedicatedInternet(service_identifier__value: $identifier) {
    edges { node {
      id
      status { value }
      vlan { node { vlan_id { value } } }
      prefix { node { prefix { value } } }
      gateway_ip_address { node { address { value } interface { node { name { value } device { node { name { value } } } } } } }
    } }
  }
}
"""

PORT = """
query Port($device: String!, $name: String!) {
  DcimInterfaceL2(device__name__value: $device, name__value: $name) {
    edges { node {
      status { value }
      enabled { value }
      untagged_vlan { node { vlan_id { value } } }
      service { node { id } }
    } }
  }
}
"""

# After a decommission none of the service's resources is left on main.
GONE = """
query Gone($vlan_id: BigInt!, $prefix: String!, $reservation: String!) {
  IpamVLAN(vlan_id__value: $vlan_id) { count }
  IpamPrefix(prefix__value: $prefix) { count }
  ServiceReservation(resource__value: $reservation) { count }
}
"""


@pytest.fixture(autouse=True)
def _on_the_session_harness(prefect_harness: None) -> None:
    """The flows run against the session's Prefect test server (tests/conftest.py)."""


@pytest.fixture
def on_infrahub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_BACKEND", "infrahub")


async def service_on_main(identifier: str) -> dict[str, Any]:
    edges = (await sdk_query(SERVICE, {"identifier": identifier}))["ServiceDedicatedInternet"]["edges"]
    assert len(edges) == 1, edges
    node: dict[str, Any] = edges[0]["node"]
    return node


async def port_on_main(device: str, name: str) -> dict[str, Any]:
    edges = (await sdk_query(PORT, {"device": device, "name": name}))["DcimInterfaceL2"]["edges"]
    assert len(edges) == 1, edges
    node: dict[str, Any] = edges[0]["node"]
    return node


@pytest.mark.slow  # two merges; make test runs the deliver flow on Infrahub in the deployed shape
async def test_a_service_lives_and_dies_through_the_flows(
    on_infrahub: None, infrahub: InfrahubInventory, new_id: Callable[[], str]
) -> None:
    identifier = new_id()
    before = await pool_and_port_usage(infrahub, SITE)

    requested = await request_service(
        request(identifier, site=SITE, bandwidth=Bandwidth.G1, package=IpPackage.SMALL)
    )
    assert requested.status is ServiceStatus.DRAFT

    # Deliver: branch, allocation tasks, proposed change, merged by the architect through the API.
    start = time.monotonic()
    delivered = await run_transition("deliver", identifier, auto_approve=True, wait=REVIEW)
    print(f"deliver flow: {time.monotonic() - start:.1f} s")
    assert delivered.outcome is Outcome.DONE, delivered.message
    assert delivered.status is ServiceStatus.ACTIVE
    handover = delivered.resources
    assert handover is not None
    prefix = IPv4Network(handover.prefix)
    assert prefix.prefixlen == 29 and handover.customer_addresses == 5
    assert IPv4Interface(f"{handover.gateway}/29") == policy.gateway_address(prefix)

    # What Infrahub itself shows on main.
    node = await service_on_main(identifier)
    assert node["status"]["value"] == "active"
    assert node["vlan"]["node"]["vlan_id"]["value"] == handover.vlan_id
    assert node["prefix"]["node"]["prefix"]["value"] == handover.prefix
    gateway = node["gateway_ip_address"]["node"]
    assert IPv4Interface(gateway["address"]["value"]) == policy.gateway_address(prefix)
    assert gateway["interface"]["node"]["name"]["value"] == policy.gateway_interface_name(handover.vlan_id)
    device, name = handover.port.split(" (")[0].split(" ")
    port = await port_on_main(device, name)
    assert (port["status"]["value"], port["enabled"]["value"]) == ("active", True)
    assert port["untagged_vlan"]["node"]["vlan_id"]["value"] == handover.vlan_id
    assert port["service"]["node"]["id"] == node["id"]
    # The gateway sits on the edge router with the switch's index.
    assert gateway["interface"]["node"]["device"]["node"]["name"]["value"] == f"rb0{device[3]}-{SITE}"

    held = await pool_and_port_usage(infrahub, SITE)
    assert held[0][policy.VLAN_POOL] == before[0][policy.VLAN_POOL] + 1
    assert held[0][policy.PREFIX_POOL] == before[0][policy.PREFIX_POOL] + 8
    assert held[1] == before[1] + 1

    # Delivering again changes nothing: no new branch, no new proposed change, nothing allocated.
    again = await run_transition("deliver", identifier, auto_approve=True, wait=REVIEW)
    assert (again.outcome, again.status) == (Outcome.DONE, ServiceStatus.ACTIVE)
    assert again.resources == handover
    assert await service_on_main(identifier) == node
    assert await pool_and_port_usage(infrahub, SITE) == held

    # Decommission: released on its branch, merged, everything back in the pools.
    start = time.monotonic()
    gone = await run_transition("decommission", identifier, auto_approve=True, wait=REVIEW)
    print(f"decommission flow: {time.monotonic() - start:.1f} s")
    assert gone.outcome is Outcome.DONE, gone.message
    assert gone.status is ServiceStatus.DECOMMISSIONED
    node = await service_on_main(identifier)
    assert node["status"]["value"] == "decommissioned"
    assert node["vlan"]["node"] is None and node["prefix"]["node"] is None
    assert node["gateway_ip_address"]["node"] is None
    port = await port_on_main(device, name)
    assert (port["status"]["value"], port["enabled"]["value"]) == ("free", False)
    assert port["service"]["node"] is None and port["untagged_vlan"]["node"] is None
    gone_from_main = await sdk_query(
        GONE, {"vlan_id": handover.vlan_id, "prefix": handover.prefix, "reservation": f"prefix:{prefix}"}
    )
    assert {kind: found["count"] for kind, found in gone_from_main.items()} == {
        "IpamVLAN": 0,
        "IpamPrefix": 0,
        "ServiceReservation": 0,
    }
    assert await pool_and_port_usage(infrahub, SITE) == before
