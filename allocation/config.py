"""Device configuration of a service, rendered from the templates Infrahub renders.

One template per device role (``allocation/templates/core_switch.j2``, ``edge_router.j2``), declared
in ``.infrahub.yml`` as Jinja2 transforms whose input is the result of their GraphQL query (beside
each template). Here the same templates get a dict of the same shape, built from the core's model,
with the same Jinja2 options as Infrahub's (``trim_blocks``, ``lstrip_blocks``): what ``factory show
--config`` and the portal print for a service is the part of Infrahub's device artifacts that
service is responsible for.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from allocation.model import Gateway, PortAssignment, Service

TEMPLATES = Path(__file__).parent / "templates"
SWITCH_TEMPLATE = "core_switch.j2"
ROUTER_TEMPLATE = "edge_router.j2"


def render_configs(service: Service) -> dict[str, str]:
    """The configuration of every device the service touches, by device name: its customer port on
    the core switch, its gateway on the edge router. Empty for a service that holds neither."""
    impl = service.implementation
    configs: dict[str, str] = {}
    if impl.port is not None:
        port = impl.port.port
        configs[port.device] = render(
            SWITCH_TEMPLATE, device_data(port.device, [port_node(service, impl.port)])
        )
    if impl.gateway is not None:
        gateway = impl.gateway
        configs[gateway.device] = render(
            ROUTER_TEMPLATE, device_data(gateway.device, [gateway_node(service, gateway)])
        )
    return configs


def render(template: str, data: dict[str, Any]) -> str:
    """A template of ``allocation/templates`` with a query result (``{"data": {...}}``) as input."""
    return _environment().get_template(template).render(data)


def device_data(device: str, interfaces: list[dict[str, Any]]) -> dict[str, Any]:
    """A device with its interfaces, shaped like the result of core_switch.gql / edge_router.gql."""
    node = {"name": _v(device), "interfaces": {"edges": [{"node": i} for i in interfaces]}}
    return {"data": {"DcimDevice": {"edges": [{"node": node}]}}}


def port_node(service: Service, assignment: PortAssignment) -> dict[str, Any]:
    """A customer port held by the service, as core_switch.gql returns it."""
    port = assignment.port
    return {
        "name": _v(port.name),
        "description": _v(f"{service.service_identifier} (VLAN {assignment.vlan_id})"),
        "role": _v("customer"),
        "speed": _v(port.speed_mbps),
        "enabled": _v(True),
        "l2_mode": _v("Access"),
        "untagged_vlan": {"node": _vlan(service, assignment.vlan_id)},
        "service": {"node": _service(service)},
    }


def gateway_node(service: Service, gateway: Gateway) -> dict[str, Any]:
    """A customer gateway interface of the service, as edge_router.gql returns it."""
    return {
        "name": _v(gateway.interface),
        "description": _v(f"Gateway of {service.service_identifier}"),
        "role": _v("customer"),
        "enabled": _v(True),
        "vlan": {"node": _vlan(service, gateway.vlan_id)},
        "ip_addresses": {"edges": [{"node": {"address": _v(str(gateway.address))}}]},
        "service": {"node": _service(service)},
    }


@cache
def _environment() -> jinja2.Environment:
    # Infrahub renders a repository's templates with these options; StrictUndefined on top, so that a
    # key this module forgets is an error here rather than an empty line.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def _vlan(service: Service, vlan_id: int) -> dict[str, Any]:
    vlan = service.implementation.vlan
    name = vlan.name if vlan is not None and vlan.vlan_id == vlan_id else f"vlan{vlan_id}"
    return {"vlan_id": _v(vlan_id), "name": _v(name)}


def _service(service: Service) -> dict[str, Any]:
    return {
        "service_identifier": _v(service.service_identifier),
        "account_reference": _v(service.account_reference),
        "bandwidth": _v(service.bandwidth.value),
    }


def _v(value: Any) -> dict[str, Any]:
    return {"value": value}
