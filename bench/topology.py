"""A synthetic operator, written as Infrahub object files so the bench exercises the real loader.

Each site gets its own L2 domain, VLAN pool (100-3999) and prefix pool (a /17 out of 10.0.0.0/8),
the per-site convention of allocation.policy.site_pools: the catalog grows past one /24 and one
VLAN range without a change to the core.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import yaml

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SPEEDS = (1000, 1000, 1000, 10000)  # three 1G ports for each 10G one


def site_name(n: int) -> str:
    return f"syn{n:03d}"


def write_topology(target: Path, sites: int, ports_per_switch: int) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    blocks = IPv4Network("10.0.0.0/8").subnets(new_prefix=17)
    locations = [
        {
            "name": "Synthetia",
            "shortname": "sy",
            "children": {
                "kind": "LocationMetro",
                "data": [
                    {
                        "name": "Synth City",
                        "shortname": "synth",
                        "children": {
                            "kind": "LocationSite",
                            "data": [{"name": site_name(n), "shortname": site_name(n)} for n in range(sites)],
                        },
                    }
                ],
            },
        }
    ]
    devices: list[dict[str, Any]] = []
    number_pools, prefix_pools, l2domains = [], [], []
    for n in range(sites):
        site = site_name(n)
        l2domains.append({"name": site})
        number_pools.append(
            {
                "name": f"Customer vlan pool {site}",
                "node": "IpamVLAN",
                "node_attribute": "vlan_id",
                "start_range": 100,
                "end_range": 3999,
            }
        )
        prefix_pools.append(
            {
                "name": f"Customer prefixes pool {site}",
                "default_prefix_type": "IpamPrefix",
                "default_prefix_length": 29,
                "ip_namespace": "default",
                "resources": [str(next(blocks))],
            }
        )
        for index in (1, 2):
            ports = [
                {
                    "name": f"Ethernet{p}",
                    "role": "customer",
                    "status": "free",
                    "enabled": False,
                    "speed": SPEEDS[p % len(SPEEDS)],
                }
                for p in range(1, ports_per_switch + 1)
            ]
            devices.append(
                {
                    "name": f"sw0{index}-{site}",
                    "role": "core",
                    "index": index,
                    "status": "active",
                    "location": [site],
                    "interfaces": {"kind": "DcimInterfaceL2", "data": ports},
                }
            )
            devices.append(
                {
                    "name": f"rb0{index}-{site}",
                    "role": "edge",
                    "index": index,
                    "status": "active",
                    "location": [site],
                }
            )
    files = {
        "01_locations.yml": ("LocationCountry", locations),
        "02_l2domains.yml": ("IpamL2Domain", l2domains),
        "03_devices.yml": ("DcimDevice", devices),
        "05_number_pools.yml": ("CoreNumberPool", number_pools),
        "06_prefix_pools.yml": ("CoreIPPrefixPool", prefix_pools),
    }
    for name, (kind, data) in files.items():
        document = {"apiVersion": "infrahub.app/v1", "kind": "Object", "spec": {"kind": kind, "data": data}}
        (target / name).write_text(yaml.dump(document, Dumper=_DUMPER, sort_keys=False))
    return target
