"""One Prefect flow per lifecycle transition, built from allocation tasks and review tasks.

API for the CLI (all async; in-process, Prefect's ephemeral mode when no PREFECT_API_URL is set)::

    from flows import (request_service, run_transition, architect, reconcile_now, quiet_console,
                       Review, TransitionResult, Outcome)

    await request_service(ServiceRequest(...)) -> TransitionResult        # records a draft
    await run_transition("deliver" | "modify" | "decommission", "DIA-0042",
                         bandwidth=Bandwidth | None, ip_package=IpPackage | None,   # modify only
                         auto_approve=False, review=Review(timeout_seconds=3600)) -> TransitionResult
    await architect("DIA-0042", lifecycle.DELIVER, "merge" | "close",
                    timeout_seconds=None) -> ProposedChange     # the approver, run beside a flow
    await reconcile_now() -> ReconcileReport
    quiet_console()      # after import: Prefect console logs at WARNING, API logs unchanged

``TransitionResult.outcome`` is ``done``, ``rejected`` (proposed change closed: compensated, the
service is back where it started) or ``waiting`` (still open after the local timeout);
``.resources`` is the customer handover (VLAN, prefix, gateway, addresses, port). Domain errors
(unknown site, no port for 10G at bru01, wrong state) are raised as ``AllocationError`` subclasses;
a bad identifier raises ``pydantic.ValidationError``. The flows themselves are ``deliver``,
``modify``, ``decommission``, ``request`` and ``reconcile``, each taking one pydantic model.

The backend is configuration: FACTORY_BACKEND / FACTORY_DB, read by each flow run.
"""

import os

# Set before Prefect reads its settings: the ephemeral server's telemetry locks its SQLite at startup.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from flows.api import (
    architect,
    quiet_console,
    reconcile_now,
    request_service,
    run_transition,
)
from flows.decommission import decommission
from flows.deliver import deliver
from flows.modify import modify
from flows.params import (
    DecommissionParams,
    DeliverParams,
    Handover,
    ModifyParams,
    Outcome,
    ReconcileParams,
    ReconcileReport,
    Review,
    TransitionResult,
)
from flows.reconcile import reconcile
from flows.request import request

__all__ = [
    "DecommissionParams",
    "DeliverParams",
    "Handover",
    "ModifyParams",
    "Outcome",
    "ReconcileParams",
    "ReconcileReport",
    "Review",
    "TransitionResult",
    "architect",
    "decommission",
    "deliver",
    "modify",
    "quiet_console",
    "reconcile",
    "reconcile_now",
    "request",
    "request_service",
    "run_transition",
]
