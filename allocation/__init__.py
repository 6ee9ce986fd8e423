"""The shared allocation core: a Dedicated Internet request in, VLAN, prefix, port and gateway out.

Runs inside Infrahub's task worker (generators) as well as in our Prefect flows, so it imports
neither Prefect nor any UI library. Where to start reading: ``transitions.py`` (what each
lifecycle transition is), ``runner.py`` (the frame they run in), ``core.py`` (plan, then apply).
"""

from allocation.core import Plan, apply, plan, release
from allocation.errors import AllocationError
from allocation.intent import Bandwidth, IpPackage, ServiceRequest, ServiceStatus
from allocation.inventory import Inventory
from allocation.model import MAIN, Implementation, Service
from allocation.results import Handover, Outcome, TransitionResult

__all__ = [
    "MAIN",
    "AllocationError",
    "Bandwidth",
    "Handover",
    "Implementation",
    "Inventory",
    "IpPackage",
    "Outcome",
    "Plan",
    "Service",
    "ServiceRequest",
    "ServiceStatus",
    "TransitionResult",
    "apply",
    "plan",
    "release",
]
