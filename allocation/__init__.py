"""The shared allocation core: a Dedicated Internet request in, VLAN, prefix, port and gateway out.

Runs inside Infrahub's task worker (generators) as well as in our Prefect flows, so it imports
neither Prefect nor any UI library.
"""

from allocation.core import Plan, apply, plan, release
from allocation.errors import AllocationError
from allocation.intent import Bandwidth, IpPackage, ServiceRequest, ServiceStatus
from allocation.inventory import Inventory
from allocation.model import MAIN, Implementation, Service

__all__ = [
    "MAIN",
    "AllocationError",
    "Bandwidth",
    "Implementation",
    "Inventory",
    "IpPackage",
    "Plan",
    "Service",
    "ServiceRequest",
    "ServiceStatus",
    "apply",
    "plan",
    "release",
]
