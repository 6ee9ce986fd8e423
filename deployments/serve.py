"""Serve every lifecycle flow from one process: ``python -m deployments.serve``.

- ``request``, ``deliver``, ``modify``, ``decommission``: manual runs from the Prefect UI (their
  parameters are pydantic models, so the UI renders a form) or the API;
- ``deliver`` also runs on the event ``factory.service.requested`` (emitted by the served
  ``request`` deployment), for the service named in the event;
- ``reconcile`` runs every 5 minutes and on Infrahub's proposed-change events (forwarded to
  Prefect's ``/api/events``), one run at a time; it concludes reviewed transitions and resumes the
  deployed runs suspended while they waited for the review.

Point PREFECT_API_URL at a Prefect server first (``prefect server start``): served runs suspend
while a review is pending, which needs a server that outlives the process.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from prefect import aserve
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger

from flows.decommission import decommission
from flows.deliver import deliver
from flows.modify import modify
from flows.reconcile import reconcile
from flows.request import SERVICE_REQUESTED, request

RECONCILE_EVERY = timedelta(minutes=5)
PROPOSED_CHANGE_EVENTS = {
    "infrahub.proposed_change.merged",
    "infrahub.proposed_change.closed",
    "factory.proposed_change.merged",
    "factory.proposed_change.closed",
}
TAGS = ["service-factory"]


async def build() -> list[RunnerDeployment]:
    deliver_on_request = DeploymentEventTrigger(
        name="deliver requested services",
        expect={SERVICE_REQUESTED},
        match={"prefect.resource.id": "factory.service.*"},
        parameters={"params": {"service_identifier": "{{ event.resource['factory.service.identifier'] }}"}},
    )
    reconcile_on_review = DeploymentEventTrigger(
        name="reconcile on proposed change merged or closed",
        expect=PROPOSED_CHANGE_EVENTS,
    )
    return [
        await request.ato_deployment(
            "request",
            parameters={"announce": True},
            tags=TAGS,
            description="Record a draft service; announces it so that delivery starts.",
        ),
        await deliver.ato_deployment(
            "deliver", triggers=[deliver_on_request], tags=TAGS, description="draft -> active, via review"
        ),
        await modify.ato_deployment(
            "modify", tags=TAGS, description="new bandwidth or IP package, via review"
        ),
        await decommission.ato_deployment(
            "decommission", tags=TAGS, description="active -> decommissioned, resources back in their pools"
        ),
        await reconcile.ato_deployment(
            "reconcile",
            interval=RECONCILE_EVERY,
            triggers=[reconcile_on_review],
            concurrency_limit=1,
            tags=TAGS,
            description="Finish reviewed transitions, resume suspended runs, report leaks",
        ),
    ]


async def main() -> None:
    await aserve(*await build())


if __name__ == "__main__":
    asyncio.run(main())
