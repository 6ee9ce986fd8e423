"""Test helpers: Otter-net with small pools, request builders."""

from __future__ import annotations

import shutil
from pathlib import Path

from allocation.intent import Bandwidth, IpPackage, ServiceRequest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"

POOLS_TEMPLATE = """---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: CoreNumberPool
  data:
    - name: Customer vlan pool
      node: IpamVLAN
      node_attribute: vlan_id
      start_range: {vlan_start}
      end_range: {vlan_end}
---
apiVersion: infrahub.app/v1
kind: Object
spec:
  kind: CoreIPPrefixPool
  data:
    - name: Customer prefixes pool
      default_prefix_type: IpamPrefix
      default_prefix_length: 29
      ip_namespace: default
      resources:
        - {prefix}
"""


def small_pools_data(
    target: Path, *, vlan_start: int = 1000, vlan_end: int = 2000, prefix: str = "203.0.113.0/24"
) -> Path:
    """Otter-net with the pools replaced, to reach exhaustion in a few requests."""
    target.mkdir(parents=True, exist_ok=True)
    for file in DATA.glob("*.yml"):
        if file.name != "05_pools.yml":
            shutil.copy(file, target / file.name)
    (target / "05_pools.yml").write_text(
        POOLS_TEMPLATE.format(vlan_start=vlan_start, vlan_end=vlan_end, prefix=prefix)
    )
    return target


def request(
    identifier: str = "DIA-0001",
    site: str = "par01",
    bandwidth: Bandwidth = Bandwidth.G1,
    package: IpPackage = IpPackage.SMALL,
    account: str = "ACC-1",
) -> ServiceRequest:
    return ServiceRequest(
        service_identifier=identifier,
        account_reference=account,
        site=site,
        bandwidth=bandwidth,
        ip_package=package,
    )
