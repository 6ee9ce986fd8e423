"""Every deployment of the lifecycle flows, declared once as plain data.

Two ways of running them are built from this list and nothing else:

- ``prefect.yaml`` (``python -m deployments.render``), for ``prefect deploy --all``: the flows on
  the work pool ``service-factory``, run by any number of ``prefect worker start --pool
  service-factory`` processes, on any number of machines (production);
- ``python -m deployments.serve``: all of them served from one process (development).

Deployments:

- ``request``, ``deliver``, ``modify``, ``decommission``: manual runs from the Prefect UI (their
  parameters are pydantic models, so the UI renders a form) or the API;
- ``deliver`` also runs on ``factory.service.requested`` (emitted by the ``request`` deployment)
  for the service named in the event;
- ``reconcile/on-review`` runs on every reviewed proposed change (``deployments/events.py``: merged
  or closed, from Infrahub's webhook or ``factory approve|reject``) for that change's branch;
- ``reconcile/reconcile`` runs every 5 minutes for everything (the safety net), one run at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from deployments import events
from flows.request import SERVICE_REQUESTED

WORK_POOL = "service-factory"
TAGS = ("service-factory",)
RECONCILE_EVERY = timedelta(minutes=5)
# A worker runs a deployment's flow in this folder (a checkout of this repository): set
# FACTORY_HOME on each worker's machine. `scripts/prefect-stack/stack` sets it for its workers.
HOME_VARIABLE = "FACTORY_HOME"


@dataclass(frozen=True)
class EventTrigger:
    """Run the deployment for each event named in ``expect`` whose resource matches ``match``;
    ``parameters`` may use Jinja over the event (``{{ event.resource['label'] }}``)."""

    name: str
    expect: tuple[str, ...]
    match: Mapping[str, str]
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class Deployment:
    name: str
    entrypoint: str  # path/to/file.py:flow_function, relative to the repository root
    description: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    interval: timedelta | None = None
    triggers: tuple[EventTrigger, ...] = ()
    concurrency_limit: int | None = None
    tags: tuple[str, ...] = TAGS

    @property
    def module(self) -> str:
        """The flow's module as imported from the repository root (``flows.deliver``)."""
        return self.entrypoint.split(":")[0].removesuffix(".py").replace("/", ".")

    @property
    def function(self) -> str:
        return self.entrypoint.split(":")[1]


DELIVER_ON_REQUEST = EventTrigger(
    name="deliver requested services",
    expect=(SERVICE_REQUESTED,),
    match={"prefect.resource.id": "factory.service.*"},
    parameters={"params": {"service_identifier": "{{ event.resource['factory.service.identifier'] }}"}},
)

RECONCILE_ON_REVIEW = EventTrigger(
    name="reconcile the branch of a merged or closed proposed change",
    expect=(events.MERGED, events.CLOSED),
    match={"prefect.resource.id": f"{events.RESOURCE_PREFIX}*"},
    parameters={"params": {"branch": f"{{{{ event.resource['{events.BRANCH_LABEL}'] }}}}"}},
)


def catalog(reconcile_every: timedelta = RECONCILE_EVERY) -> list[Deployment]:
    """The deployments; ``reconcile_every`` shortens the safety net's interval (tests)."""
    return [
        Deployment(
            name="request",
            entrypoint="flows/request.py:request",
            description="Record a draft service; announces it so that delivery starts.",
            parameters={"announce": True},
        ),
        Deployment(
            name="deliver",
            entrypoint="flows/deliver.py:deliver",
            description="draft -> active, via review",
            triggers=(DELIVER_ON_REQUEST,),
        ),
        Deployment(
            name="modify",
            entrypoint="flows/modify.py:modify",
            description="new bandwidth or IP package, via review",
        ),
        Deployment(
            name="decommission",
            entrypoint="flows/decommission.py:decommission",
            description="active -> decommissioned, resources back in their pools",
        ),
        Deployment(
            name="reconcile",
            entrypoint="flows/reconcile.py:reconcile",
            description="The safety net: finish every reviewed transition, resume suspended runs, report leaks",
            interval=reconcile_every,
            concurrency_limit=1,
        ),
        # The same flow for one branch, on each review event: not queued behind the sweep or behind
        # each other (each touches one service; concluding is idempotent).
        Deployment(
            name="on-review",
            entrypoint="flows/reconcile.py:reconcile",
            description="Finish the transition of a merged or closed proposed change's branch, resume its run",
            triggers=(RECONCILE_ON_REVIEW,),
        ),
    ]
