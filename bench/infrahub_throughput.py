"""Services per minute on one Infrahub with K deliveries at once (request -> merged and concluded).

Each delivery is its own client (as K flow runs on K workers would be): request, begin, plan, apply,
review, the architect's merge, conclude. Runs on a synthetic site of its own (``tput01``: two core
switches with 20 1G customer ports each, two edge routers, its own L2 domain, VLAN pool 100-999 and a
prefix pool over 198.19.200.0/22, in RFC 2544's benchmarking space), so it never takes what others
use on a shared Infrahub. Afterwards it checks that no VLAN ID, prefix or port was given twice and
that every reservation belongs to a delivered service, then removes the services and the site
(directly on main: bench data, not a product path).

    python -m bench.infrahub_throughput --k 1 --k 4 --k 8 --k 16 [--json out.json] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from allocation import attempts, intake, runner
from allocation.backends.infrahub import InfrahubInventory
from allocation.errors import InventoryUnavailable
from allocation.intent import Bandwidth, IpPackage, ServiceRequest, ServiceStatus
from allocation.model import Implementation
from allocation.results import Outcome
from allocation.settings import InfrahubSettings
from allocation.steps import Work, read_service
from allocation.transitions import DELIVER
from bench.infrahub_tasks import TaskManager, caused_by

SITE = "tput01"
PORTS_PER_SWITCH = 20
RESOURCE = "198.19.200.0/22"
VLAN_RANGE = (100, 999)
INFRAHUBCTL = Path(sys.executable).parent / "infrahubctl"
ATTEMPTS = 6

TOPOLOGY = f"""---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: LocationSite
  data:
    - name: {SITE}
      shortname: {SITE}
      description: Synthetic site of bench/infrahub_throughput.py
      parent: paris
---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: IpamL2Domain
  data:
    - name: {SITE}
      description: L2 domain of the synthetic site {SITE}
---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: IpamPrefix
  data:
    - prefix: {RESOURCE}
      status: active
      role: supernet
      description: Resource of the synthetic site {SITE}'s prefix pool (bench)
---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: CoreNumberPool
  data:
    - name: Customer vlan pool {SITE}
      node: IpamVLAN
      node_attribute: vlan_id
      start_range: {VLAN_RANGE[0]}
      end_range: {VLAN_RANGE[1]}
---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: CoreIPPrefixPool
  data:
    - name: Customer prefixes pool {SITE}
      default_prefix_type: IpamPrefix
      default_prefix_length: 29
      default_member_type: prefix
      ip_namespace: default
      resources:
        - {RESOURCE}
---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: DcimDevice
  data:
"""


def _devices() -> str:
    text = ""
    for index in (1, 2):
        text += f"""    - name: sw0{index}-{SITE}
      status: active
      role: core
      index: {index}
      location: [{SITE}]
      interfaces:
        kind: DcimInterfaceL2
        data:
"""
        for port in range(1, PORTS_PER_SWITCH + 1):
            text += f"""          - name: Ethernet{port}
            role: customer
            status: free
            enabled: false
            speed: 1000
"""
    for index in (1, 2):
        text += f"""    - name: rb0{index}-{SITE}
      status: active
      role: edge
      index: {index}
      location: [{SITE}]
"""
    return text


@dataclass
class Run:
    k: int
    seconds: float = 0.0
    services: list[str] = field(default_factory=list)
    per_service_seconds: list[float] = field(default_factory=list)
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)
    merge_tasks: list[dict[str, float]] = field(default_factory=list)
    infrahub_task_seconds: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def per_minute(self) -> float:
        done = len(self.per_service_seconds)
        return done / (self.seconds / 60) if self.seconds else 0.0


def settings_token() -> str | None:
    token = InfrahubSettings().api_token
    return token.get_secret_value() if token else None


def load_topology() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tput.yml"
        path.write_text(TOPOLOGY + _devices())
        subprocess.run([str(INFRAHUBCTL), "object", "load", str(path)], check=True, capture_output=True)


async def deliver(identifier: str, timings: list[float], run: Run) -> Implementation | None:
    """One delivery, start to concluded, on its own client. Like the flows' tasks, a step that finds
    Infrahub unavailable (a timeout on a busy server) is run again: every step is idempotent."""
    inventory = InfrahubInventory.from_settings(InfrahubSettings())
    inventory.merge_timeout = 3600.0  # K merges queue behind Infrahub's global merge lock
    started = time.perf_counter()
    request = ServiceRequest(
        service_identifier=identifier,
        account_reference="ACC-TPUT",
        site=SITE,
        bandwidth=Bandwidth.G1,
        ip_package=IpPackage.SMALL,
    )
    try:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await intake.record(request, inventory)
                work = await runner.run(Work(identifier, DELIVER, inventory))
                change = work.change
                if change is None:  # delivered by an earlier attempt
                    change = (await attempts.latest(identifier, DELIVER.name, inventory)).change
                assert change is not None
                await inventory.merge_proposed_change(change.id)
                settled = await runner.settle(Work(identifier, DELIVER, inventory, branch=change.branch))
                assert settled.outcome is Outcome.DONE, settled.outcome
                service = await read_service(inventory, identifier)
                assert service.status is ServiceStatus.ACTIVE
                timings.append(time.perf_counter() - started)
                return service.implementation
            except InventoryUnavailable as exc:
                run.retries.append(f"{identifier} attempt {attempt}: {exc}"[:200])
                await asyncio.sleep(10 * attempt)
        raise RuntimeError(f"still unavailable after {ATTEMPTS} attempts")
    except Exception as exc:  # reported, and counted against the run
        run.errors.append(f"{identifier}: {type(exc).__name__}: {exc}"[:300])
        return None
    finally:
        run.requests += inventory.round_trips
        await inventory.close()


async def measure(k: int, prefix: str, tasks: TaskManager) -> Run:
    run = Run(k=k)
    run.services = [f"{prefix}-{n:04d}" for n in range(k)]
    since = datetime.now(UTC) - timedelta(seconds=1)
    started = time.perf_counter()
    implementations = await asyncio.gather(*(deliver(i, run.per_service_seconds, run) for i in run.services))
    run.seconds = time.perf_counter() - started
    merges = await tasks.runs(*(f"Deliver {i} " for i in run.services), since=since)
    run.merge_tasks = [
        {"run": m.run_seconds, "queued": m.queued_seconds}
        for m in merges
        if m.flow == "proposed-change-merge"
    ]
    caused = await caused_by(tasks, [prefix, prefix.lower()], since)
    run.infrahub_task_seconds = {flow: round(sum(times), 1) for flow, times in caused.items()}
    done = [impl for impl in implementations if impl is not None]
    vlans = Counter((impl.vlan.l2domain, impl.vlan.vlan_id) for impl in done if impl.vlan)
    prefixes = Counter(str(impl.prefix) for impl in done if impl.prefix)
    ports = Counter(impl.port.port.id for impl in done if impl.port)
    run.checks = {
        "delivered": len(done),
        "complete": sum(impl.complete for impl in done),
        "duplicate_vlans": [v for v, n in vlans.items() if n > 1],
        "duplicate_prefixes": [p for p, n in prefixes.items() if n > 1],
        "duplicate_ports": [p for p, n in ports.items() if n > 1],
    }
    return run


LEFT = """
query Left($site: String!) {
  ServiceReservation(site__value: $site) { edges { node { id resource { value } service_identifier { value } } } }
  LocationSite(shortname__value: $site) { edges { node { services { edges { node { display_label } } } } } }
}
"""


async def leaks(inventory: InfrahubInventory) -> list[str]:
    """Reservations at the site (ports) or in its pools whose service holds nothing on main."""
    found: list[str] = []
    for service in await inventory.list_services("main"):
        if service.site != SITE:
            continue
        held = await inventory._read(service.service_identifier, "main")
        impl = service.implementation
        owned = {
            f"port:{impl.port.port.id}" if impl.port else "",
            f"prefix:{impl.prefix}" if impl.prefix else "",
        }
        if impl.vlan:
            owned.add(f"vlan:{impl.vlan.l2domain}:{impl.vlan.vlan_id}")
        found += [
            f"{service.service_identifier}: {r['resource']['value']}"
            for r in held.records
            if r["resource"]["value"] not in owned
        ]
    return found


async def clean(inventory: InfrahubInventory, prefix: str) -> None:
    """Remove the bench's services, their objects and reservations, then the site itself, from main."""
    services = [s for s in await inventory.list_services("main") if s.site == SITE]
    for service in services:
        read = await inventory._read(service.service_identifier, "main")
        node = read.node or {}
        ops: list[str] = []
        ids: list[tuple[str, str]] = [("ServiceReservation", r["id"]) for r in read.records]
        for edge in (node.get("dedicated_interfaces") or {}).get("edges", []):
            interface = edge["node"]
            if interface["__typename"] == "DcimInterfaceL3":
                ids += [("IpamIPAddress", a["node"]["id"]) for a in interface["ip_addresses"]["edges"]]
                ids.append(("DcimInterfaceL3", interface["id"]))
        if (node.get("prefix") or {}).get("node"):
            ids.append(("IpamPrefix", node["prefix"]["node"]["id"]))
        if (node.get("vlan") or {}).get("node"):
            ids.append(("IpamVLAN", node["vlan"]["node"]["id"]))
        ids.append(("ServiceDedicatedInternet", node["id"]))
        for n, (kind, node_id) in enumerate(ids):
            ops.append(f'm{n}: {kind}Delete(data: {{id: "{node_id}"}}) {{ ok }}')
        await inventory._gql("mutation Clean {\n" + "\n".join(ops) + "\n}")
    data = await inventory._gql(
        """query Site($site: String!, $pools: [String], $prefix: String!) {
             DcimDevice(location__shortname__value: $site) { edges { node { id } } }
             CoreNumberPool(name__values: $pools) { edges { node { id } } }
             CoreIPPrefixPool(name__values: $pools) { edges { node { id } } }
             IpamL2Domain(name__value: $site) { edges { node { id } } }
             IpamPrefix(prefix__value: $prefix) { edges { node { id } } }
             LocationSite(shortname__value: $site) { edges { node { id } } }
           }""",
        {
            "site": SITE,
            "pools": [f"Customer vlan pool {SITE}", f"Customer prefixes pool {SITE}"],
            "prefix": RESOURCE,
        },
    )
    branches = await inventory._gql("query { Branch { name } }")
    for name in [b["name"] for b in branches["Branch"] if b["name"].startswith(prefix.lower())]:
        await inventory._gql(
            "mutation($n: String!) { BranchDelete(data: {name: $n}, wait_until_completion: false) { ok } }",
            {"n": name},
        )
    order = ["DcimDevice", "CoreIPPrefixPool", "CoreNumberPool", "IpamPrefix", "IpamL2Domain", "LocationSite"]
    for kind in order:
        for edge in data[kind]["edges"]:
            await inventory._gql(
                f'mutation {{ {kind}Delete(data: {{id: "{edge["node"]["id"]}"}}) {{ ok }} }}'
            )


async def main(ks: list[int], keep: bool) -> list[Run]:
    load_topology()
    tasks = TaskManager()
    inventory = InfrahubInventory.from_settings(InfrahubSettings())
    runs: list[Run] = []
    stamp = int(time.time()) % 100000
    try:
        for k in ks:
            run = await measure(k, f"TP{stamp}K{k}", tasks)
            run.checks["leaks"] = await leaks(inventory)
            runs.append(run)
            print(
                f"K={k:>2}: {len(run.per_service_seconds)}/{k} delivered in {run.seconds:.0f}s = "
                f"{run.per_minute:.2f} services/min; per service {min(run.per_service_seconds, default=0):.0f}-"
                f"{max(run.per_service_seconds, default=0):.0f}s; {run.requests / max(1, k):.1f} requests each; "
                f"merge tasks {sum(m['run'] for m in run.merge_tasks):.0f}s run, "
                f"{sum(m['queued'] for m in run.merge_tasks):.0f}s queued; Infrahub task seconds for these "
                f"services {sum(run.infrahub_task_seconds.values()):.0f} {run.infrahub_task_seconds}; "
                f"checks {run.checks}; retried steps {len(run.retries)}; errors {run.errors}",
                flush=True,
            )
    finally:
        if not keep:
            await clean(inventory, f"TP{stamp}")
        await inventory.close()
        await tasks.close()
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--k", type=int, action="append", default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the services and the site in Infrahub")
    arguments = parser.parse_args()
    if not os.environ.get("INFRAHUB_ADDRESS"):
        sys.exit("INFRAHUB_ADDRESS is not set")
    measured = asyncio.run(main(arguments.k or [1, 4, 8, 16], arguments.keep))
    if arguments.json is not None:
        arguments.json.write_text(
            json.dumps([run.__dict__ | {"per_minute": run.per_minute} for run in measured], indent=2)
        )
