"""Approval bound to the plan: what a proposed change was opened for, recorded in its description.

The description ends with a fenced block holding, per service, the state the branch gives it (intent,
status and every allocated resource) as JSON, followed by the SHA-256 of that JSON in canonical form
(sorted keys, no spaces)::

    ```service-factory-plan
    {"DIA-0042": {"status": "active", "vlan": {"id": 1001, ...}, ...}}
    ```
    plan sha256: 3f5a...

The check compares the branch with this record: a branch edited after the change was opened (by
hand, or by a second attempt) no longer matches, and the change cannot merge until it is re-opened
(the transition run again refreshes the record). Conclusion compares main with it after the merge.
Pure functions: no I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from allocation.model import Service

FENCE = "service-factory-plan"
_BLOCK = re.compile(rf"```{FENCE}\n(?P<body>.*?)\n```\s*\nplan sha256: (?P<digest>[0-9a-f]{{64}})", re.S)

State = dict[str, Any]


def state_of(service: Service) -> State:
    """What is reviewed of one service: its intent and status on the branch and what it holds there."""
    impl = service.implementation
    return {
        "account": service.account_reference,
        "site": service.site,
        "status": service.status.value,
        "bandwidth_mbps": service.bandwidth.mbps,
        "ip_package": service.ip_package.value,
        "vlan": {"id": impl.vlan.vlan_id, "l2domain": impl.vlan.l2domain} if impl.vlan else None,
        "prefix": str(impl.prefix) if impl.prefix else None,
        "port": {
            "device": impl.port.port.device,
            "name": impl.port.port.name,
            "speed_mbps": impl.port.port.speed_mbps,
            "vlan_id": impl.port.vlan_id,
        }
        if impl.port
        else None,
        "gateway": {
            "device": impl.gateway.device,
            "interface": impl.gateway.interface,
            "address": str(impl.gateway.address),
            "vlan_id": impl.gateway.vlan_id,
        }
        if impl.gateway
        else None,
    }


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(states: dict[str, State]) -> str:
    return hashlib.sha256(canonical(states).encode()).hexdigest()


def record(services: list[Service]) -> str:
    """The block a proposed change's description ends with."""
    states = {s.service_identifier: state_of(s) for s in services}
    body = json.dumps(states, sort_keys=True, indent=2)
    return f"```{FENCE}\n{body}\n```\nplan sha256: {digest(states)}\n"


@dataclass(frozen=True)
class Recorded:
    """The plan a proposed change records; ``intact`` is False when its JSON no longer matches its
    digest (the description was edited by hand)."""

    states: dict[str, State]
    digest: str
    intact: bool


def parse(description: str) -> Recorded | None:
    """The recorded plan of a description; None when it records none (a change opened by hand or by
    an older factory). The last block wins."""
    found = list(_BLOCK.finditer(description or ""))
    if not found:
        return None
    match = found[-1]
    try:
        states = json.loads(match["body"])
    except json.JSONDecodeError:
        return Recorded({}, match["digest"], intact=False)
    if not isinstance(states, dict):
        return Recorded({}, match["digest"], intact=False)
    return Recorded(states, match["digest"], intact=digest(states) == match["digest"])


def differences(reviewed: State | None, service: Service | None) -> list[str]:
    """What differs between the reviewed state of a service and the service now, in words."""
    now = state_of(service) if service is not None else None
    if reviewed == now:
        return []
    if reviewed is None or now is None:
        return ["it was not part of the reviewed plan" if reviewed is None else "it no longer exists"]
    return [
        f"{key} {_show(reviewed.get(key))} was reviewed, now {_show(now.get(key))}"
        for key in sorted(set(reviewed) | set(now))
        if reviewed.get(key) != now.get(key)
    ]


def short(value: str) -> str:
    return value[:12]


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k} {v}" for k, v in sorted(value.items())) + ")"
    return "none" if value is None else str(value)
