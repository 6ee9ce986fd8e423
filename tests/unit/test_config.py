"""Device configuration: one template per device role, rendered here as Infrahub renders it.

The templates get the result of their GraphQL query in Infrahub (a Jinja2 transform) and a dict of the
same shape from allocation/config.py on the embedded inventory: the shapes are compared with the
queries, and the output with Infrahub's own renderer (the SDK's Jinja2Template, with the filters
Infrahub's worker allows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import graphql
import pytest
from infrahub_sdk.template import Jinja2Template
from infrahub_sdk.template.filters import ExecutionContext

from allocation import config
from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import Bandwidth, IpPackage
from allocation.model import Service
from tests import lifecycle
from tests.support import request


async def delivered(inventory: EmbeddedInventory, identifier: str, **kwargs: Any) -> Service:
    await lifecycle.request_service(request(identifier, **kwargs), inventory)
    change = await lifecycle.prepare(identifier, lifecycle.DELIVER, inventory)
    assert change is not None
    await inventory.merge_proposed_change(change.id)
    return await lifecycle.get_service(identifier, inventory)


async def test_a_service_renders_its_port_and_its_gateway(inventory: EmbeddedInventory) -> None:
    service = await delivered(
        inventory, "DIA-0042", account="ACC-9", bandwidth=Bandwidth.G10, package=IpPackage.MEDIUM
    )
    configs = config.render_configs(service)
    assert list(configs) == ["sw01-par01", "rb01-par01"]
    assert configs["sw01-par01"] == (
        "! sw01-par01: customer ports, rendered by the service factory\n"
        "!\n"
        "vlan 1000\n"
        "   name vlan__DIA-0042\n"
        "!\n"
        "interface Ethernet8\n"
        "   description DIA-0042 | ACC-9 | 10000 Mbit/s\n"
        "   switchport mode access\n"
        "   switchport access vlan 1000\n"
        "   speed forced 10000full\n"
        "   no shutdown\n"
        "!"
    )
    assert configs["rb01-par01"] == (
        "! rb01-par01: customer gateways, rendered by the service factory\n"
        "!\n"
        "vlan 1000\n"
        "   name vlan__DIA-0042\n"
        "!\n"
        "interface Vlan1000\n"
        "   description DIA-0042 | ACC-9 | gateway\n"
        "   ip address 203.0.113.1/28\n"
        "   no shutdown\n"
        "!"
    )


async def test_a_service_that_holds_nothing_renders_nothing(inventory: EmbeddedInventory) -> None:
    await lifecycle.request_service(request("DIA-0001"), inventory)
    assert config.render_configs(await lifecycle.get_service("DIA-0001", inventory)) == {}


async def whole_devices(inventory: EmbeddedInventory) -> dict[str, dict[str, Any]]:
    """sw01-par01 and rb01-par01 as a device's query returns them: an uplink, free ports, two
    services (a 1G and a 10G one) and, on the router, its routed uplink."""
    one = await delivered(inventory, "DIA-0001", bandwidth=Bandwidth.G1)
    await delivered(inventory, "DIA-0002", bandwidth=Bandwidth.G1)  # the other switch
    three = await delivered(inventory, "DIA-0003", bandwidth=Bandwidth.G10, package=IpPackage.LARGE)
    assert {s.implementation.port.port.device for s in (one, three) if s.implementation.port} == {
        "sw01-par01"
    }

    def plain(name: str, role: str, description: str | None = None, speed: int = 1000) -> dict[str, Any]:
        node: dict[str, Any] = {
            "name": {"value": name},
            "description": {"value": description},
            "role": {"value": role},
            "speed": {"value": speed},
            "enabled": {"value": role == "uplink"},
            "service": {"node": None},
        }
        return node

    switch = [
        {**plain("Ethernet1", "uplink", "Uplink to rb01-par01", 10000), "l2_mode": {"value": "Trunk"}},
        *(
            {**plain(f"Ethernet{n}", "customer"), "l2_mode": {"value": None}, "untagged_vlan": {"node": None}}
            for n in (5, 6, 7, 9)
        ),
    ]
    switch += [config.port_node(s, s.implementation.port) for s in (three, one) if s.implementation.port]
    router = [
        {
            **plain("Ethernet1", "uplink", "Uplink to sw01-par01", 10000),
            "vlan": {"node": None},
            "ip_addresses": {"edges": []},
        }
    ]
    router += [
        config.gateway_node(s, s.implementation.gateway) for s in (three, one) if s.implementation.gateway
    ]
    return {
        config.SWITCH_TEMPLATE: config.device_data("sw01-par01", switch),
        config.ROUTER_TEMPLATE: config.device_data("rb01-par01", router),
    }


async def test_whole_devices_render_as_infrahub_renders_them(inventory: EmbeddedInventory) -> None:
    devices = await whole_devices(inventory)
    for template, data in devices.items():
        infrahub = Jinja2Template(template=Path(template), template_directory=config.TEMPLATES)
        infrahub.validate(
            context=ExecutionContext.CORE | ExecutionContext.WORKER
        )  # filters the worker allows
        assert await infrahub.render(variables=data) == config.render(template, data)
    switch = config.render(config.SWITCH_TEMPLATE, devices[config.SWITCH_TEMPLATE])
    assert "interface Ethernet1\n   description Uplink to rb01-par01\n   switchport mode trunk\n" in switch
    assert "   switchport trunk allowed vlan 1000,1002\n" in switch
    assert "interface Ethernet5\n   description free customer port\n   shutdown\n" in switch
    assert switch.index("interface Ethernet4") < switch.index("interface Ethernet8")  # sorted by name
    assert "vlan 1000\n   name vlan__DIA-0001\n!\nvlan 1002\n   name vlan__DIA-0003\n" in switch
    router = config.render(config.ROUTER_TEMPLATE, devices[config.ROUTER_TEMPLATE])
    assert "Ethernet1" not in router  # what the factory does not manage is not rendered
    assert (
        "interface Vlan1002\n   description DIA-0003 | ACC-1 | gateway\n   ip address 203.0.113.33/27\n"
        in router
    )


def selected(query: str) -> Any:
    """What a query selects for each interface of its device, as nested dicts (fragments merged; an
    attribute, ``{ value }``, as None)."""

    def fields(selection_set: Any) -> Any:
        found: dict[str, Any] = {}
        for selection in selection_set.selections:
            if isinstance(selection, graphql.InlineFragmentNode):
                found.update(fields(selection.selection_set))
            else:
                inner = selection.selection_set
                found[selection.name.value] = fields(inner) if inner is not None else None
        return None if set(found) == {"value"} else found

    operation = graphql.parse(query).definitions[0]
    assert isinstance(operation, graphql.OperationDefinitionNode)
    return fields(operation.selection_set)["DcimDevice"]["edges"]["node"]["interfaces"]["edges"]["node"]


def keys(data: Any) -> Any:
    """The same view of a dict built here: ``{"value": ...}`` as None."""
    if isinstance(data, dict):
        return None if set(data) == {"value"} else {k: keys(v) for k, v in data.items()}
    if isinstance(data, list):
        merged: dict[str, Any] = {}
        for item in data:
            merged.update(keys(item) or {})
        return merged
    return None


@pytest.mark.parametrize(
    ("template", "node"),
    [(config.SWITCH_TEMPLATE, "port_node"), (config.ROUTER_TEMPLATE, "gateway_node")],
)
async def test_the_embedded_data_has_the_shape_of_the_query_result(
    inventory: EmbeddedInventory, template: str, node: str
) -> None:
    service = await delivered(inventory, "DIA-0001")
    impl = service.implementation
    built = getattr(config, node)(service, impl.port if node == "port_node" else impl.gateway)
    query = (config.TEMPLATES / template.replace(".j2", ".gql")).read_text()
    assert keys(built) == selected(query)
