"""GraphQL payloads to the core's model, and the few literals the backend writes."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Interface, IPv4Network
from typing import Any

from allocation.intent import Bandwidth, IpPackage, ServiceStatus
from allocation.model import (
    ChangeState,
    Device,
    Gateway,
    Implementation,
    Port,
    PortAssignment,
    ProposedChange,
    Service,
    Vlan,
)

# A customer VLAN in this status is released on a branch and deleted from main after the merge.
RELEASED_VLAN_STATUS = "deprecated"

_CHANGE_STATES = {
    "open": ChangeState.OPEN,
    "merging": ChangeState.OPEN,
    "merged": ChangeState.MERGED,
    "closed": ChangeState.CLOSED,
    "canceled": ChangeState.CLOSED,
}


def value(node: dict[str, Any] | None, name: str) -> Any:
    """``node[name].value``, or None when the attribute or the node is missing."""
    if not node:
        return None
    field = node.get(name)
    return field.get("value") if isinstance(field, dict) else None


def peer(node: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    """The peer node of a cardinality-one relationship."""
    if not node:
        return None
    related = node.get(name)
    if not isinstance(related, dict):
        return None
    found = related.get("node")
    return found if isinstance(found, dict) else None


def peers(node: dict[str, Any] | None, name: str) -> list[dict[str, Any]]:
    """The peer nodes of a cardinality-many relationship."""
    if not node or not isinstance(node.get(name), dict):
        return []
    return [edge["node"] for edge in node[name].get("edges") or [] if edge.get("node")]


def nodes(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    block = data.get(kind) or {}
    return [edge["node"] for edge in block.get("edges") or [] if edge.get("node")]


def port_key(device: str, name: str) -> str:
    return f"{device}:{name}"


def interfaces(service: dict[str, Any], typename: str) -> list[dict[str, Any]]:
    return [i for i in peers(service, "dedicated_interfaces") if i.get("__typename") == typename]


def held_vlan(service: dict[str, Any]) -> dict[str, Any] | None:
    """The service's VLAN, unless its release is pending."""
    vlan = peer(service, "vlan")
    if vlan is None or value(vlan, "status") == RELEASED_VLAN_STATUS:
        return None
    return vlan


def to_device(node: dict[str, Any]) -> Device:
    index = value(node, "index")
    return Device(
        name=str(value(node, "name")),
        role=str(value(node, "role")),
        index=None if index is None else int(index),
    )


def to_port(interface: dict[str, Any]) -> Port:
    device = peer(interface, "device") or {}
    name = str(value(interface, "name"))
    return Port(
        id=port_key(str(value(device, "name")), name),
        device=str(value(device, "name")),
        name=name,
        speed_mbps=int(value(interface, "speed") or 0),
        device_index=int(value(device, "index") or 0),
    )


def to_implementation(service: dict[str, Any]) -> Implementation:
    vlan_node = held_vlan(service)
    vlan = (
        Vlan(
            vlan_id=int(value(vlan_node, "vlan_id")),
            name=str(value(vlan_node, "name")),
            l2domain=str(value(peer(vlan_node, "l2domain"), "name")),
        )
        if vlan_node
        else None
    )
    prefix_node = peer(service, "prefix")
    prefix = IPv4Network(value(prefix_node, "prefix")) if prefix_node else None
    port = None
    for interface in interfaces(service, "DcimInterfaceL2"):
        untagged = peer(interface, "untagged_vlan")
        port = PortAssignment(port=to_port(interface), vlan_id=int(value(untagged, "vlan_id") or 0))
    gateway = None
    for interface in interfaces(service, "DcimInterfaceL3"):
        addresses = peers(interface, "ip_addresses")
        terminated = peer(interface, "vlan")
        if not addresses or terminated is None:
            continue  # half-built: ensure_gateway completes it
        gateway = Gateway(
            device=str(value(peer(interface, "device"), "name")),
            interface=str(value(interface, "name")),
            address=IPv4Interface(value(addresses[0], "address")),
            vlan_id=int(value(terminated, "vlan_id")),
        )
    return Implementation(vlan=vlan, prefix=prefix, port=port, gateway=gateway)


def to_service(node: dict[str, Any]) -> Service:
    return Service(
        service_identifier=str(value(node, "service_identifier")),
        account_reference=str(value(node, "account_reference")),
        site=str(value(peer(node, "location"), "shortname")),
        bandwidth=Bandwidth(str(value(node, "bandwidth"))),
        ip_package=IpPackage(str(value(node, "ip_package"))),
        status=ServiceStatus.parse(str(value(node, "status"))),
        implementation=to_implementation(node),
        requested_by=value(node, "requested_by"),
    )


def created_at(node_id: str) -> datetime | None:
    """Infrahub ids are UUIDT: their first 16 hex digits are the creation time in nanoseconds."""
    try:
        return datetime.fromtimestamp(int(node_id.replace("-", "")[:16], 16) / 1e9, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def to_change(node: dict[str, Any]) -> ProposedChange:
    state = _CHANGE_STATES.get(str(value(node, "state")), ChangeState.OPEN)
    decider = value((node.get("state") or {}).get("updated_by"), "name")
    return ProposedChange(
        id=str(node["id"]),
        name=str(value(node, "name") or ""),
        branch=str(value(node, "source_branch")),
        state=state,
        description=str(value(node, "description") or ""),
        created_at=created_at(str(node["id"])),
        decided_by=str(decider) if decider is not None and state is not ChangeState.OPEN else None,
    )
