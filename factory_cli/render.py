"""Rich tables for what the CLI shows. Presentation only."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from allocation.core import Plan
from allocation.model import PoolUsage, PortUsage, Service


def services_table(services: list[Service], title: str = "Services") -> Table:
    table = Table(title=title)
    for column in (
        "service",
        "account",
        "site",
        "bandwidth",
        "package",
        "status",
        "VLAN",
        "prefix",
        "port",
        "gateway",
    ):
        table.add_column(column)
    for s in services:
        impl = s.implementation
        table.add_row(
            s.service_identifier,
            s.account_reference,
            s.site,
            f"{s.bandwidth.mbps} Mbit/s",
            s.ip_package.value,
            s.status.value,
            str(impl.vlan.vlan_id) if impl.vlan else "-",
            str(impl.prefix) if impl.prefix else "-",
            f"{impl.port.port.device} {impl.port.port.name}" if impl.port else "-",
            f"{impl.gateway.address} on {impl.gateway.device}" if impl.gateway else "-",
        )
    return table


def plan_table(plan: Plan) -> Table:
    r = plan.request
    table = Table(title=f"Plan for {r.service_identifier} at {plan.site.shortname} (nothing reserved)")
    for column in ("resource", "action", "detail"):
        table.add_column(column)
    for step in plan.steps:
        table.add_row(step.role, step.action.value, step.detail)
    return table


def pools_table(pools: list[PoolUsage]) -> Table:
    table = Table(title="Pools")
    for column in ("pool", "kind", "used", "total", "utilisation"):
        table.add_column(column)
    for p in pools:
        unit = "addresses" if p.kind == "prefix" else "IDs"
        table.add_row(p.name, p.kind, str(p.used), f"{p.total} {unit}", f"{p.utilisation:.1%}")
    return table


def ports_table(ports: list[PortUsage]) -> Table:
    table = Table(title="Customer ports")
    for column in ("site", "switch", "speed", "free", "used"):
        table.add_column(column)
    for p in ports:
        table.add_row(p.site, p.device, f"{p.speed_mbps} Mbit/s", str(p.free), str(p.used))
    return table


def decisions_table(decisions: list[Any]) -> Table:
    """Every proposed change of a service and who decided it (allocation.history.Decision)."""
    table = Table(title="Proposed changes")
    for column in ("transition", "branch", "change", "state", "decided by"):
        table.add_column(column)
    for d in decisions:
        table.add_row(d.transition, d.branch, d.change.id, d.change.state.value, d.decided_by or "-")
    return table


def handover_table(identifier: str, handover: Any) -> Table:
    """What service delivery hands to the customer (flows.Handover)."""
    table = Table(title=f"{identifier}: handover", show_header=False)
    table.add_column("what")
    table.add_column("value")
    rows = [
        ("site", handover.site),
        ("bandwidth", f"{handover.bandwidth_mbps} Mbit/s"),
        ("port", handover.port),
        ("VLAN", str(handover.vlan_id)),
        ("prefix", f"{handover.prefix} ({handover.ip_package.value})"),
        ("gateway", str(handover.gateway)),
        (
            "customer addresses",
            f"{handover.first_customer_address} - {handover.last_customer_address} ({handover.customer_addresses})",
        ),
    ]
    for what, value in rows:
        table.add_row(what, value)
    return table
