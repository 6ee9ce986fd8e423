"""Serve every lifecycle flow from one process: ``python -m deployments.serve`` (development).

The deployments are those of ``deployments/catalog.py``, the same ones ``prefect.yaml`` puts on the
work pool for production. Point PREFECT_API_URL at a Prefect server first (``prefect server
start`` or ``scripts/prefect-stack/stack start``): served runs suspend while a review is pending,
which needs a server that outlives the process.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from datetime import timedelta
from typing import Any

from prefect import Flow
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.runner import Runner
from prefect.utilities.callables import ParameterSchema

from deployments.catalog import RECONCILE_EVERY, Deployment, EventTrigger, catalog
from deployments.forms import form_schema, known_sites


def flow_of(deployment: Deployment) -> Flow[..., object]:
    flow = getattr(importlib.import_module(deployment.module), deployment.function)
    if not isinstance(flow, Flow):
        raise TypeError(f"{deployment.entrypoint} is not a Prefect flow")
    return flow


def trigger(spec: EventTrigger) -> DeploymentEventTrigger:
    return DeploymentEventTrigger(
        name=spec.name, expect=set(spec.expect), match=dict(spec.match), parameters=dict(spec.parameters)
    )


async def build(
    reconcile_every: timedelta = RECONCILE_EVERY, sites: list[str] | None = None
) -> list[RunnerDeployment]:
    """The catalog's deployments, with the forms of deployments/forms.py (sites read from the inventory
    unless given)."""
    sites = sites if sites is not None else await known_sites()
    built = []
    for deployment in catalog(reconcile_every):
        flow = flow_of(deployment)
        runner_deployment = await flow.ato_deployment(
            deployment.name,
            description=deployment.description,
            parameters=dict(deployment.parameters) or None,
            interval=deployment.interval,
            triggers=[trigger(t) for t in deployment.triggers] or None,
            concurrency_limit=deployment.concurrency_limit,
            tags=list(deployment.tags),
            paused=False,  # the runner pauses the schedules when it stops: serving again resumes them
            enforce_parameter_schema=True,
        )
        runner_deployment._parameter_openapi_schema = ParameterSchema(
            **form_schema(flow.parameters.model_dump(), sites)
        )
        built.append(runner_deployment)
    return built


class ServeRunner(Runner):
    """Prefect's runner, stopping on SIGTERM as it does on Ctrl-C. Its own SIGTERM handler calls
    the async ``stop`` from the event loop's thread without awaiting it ("coroutine
    'Runner.astop' was never awaited") and exits on the spot."""

    def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
        self._logger.info("SIGTERM received, stopping")
        loop = asyncio.get_running_loop()
        # From a signal handler: schedule the stop through the loop's wake-up pipe.
        loop.call_soon_threadsafe(lambda: setattr(self, "_stop_task", loop.create_task(self.astop())))


async def main(reconcile_every: timedelta = RECONCILE_EVERY) -> None:
    # As `prefect.aserve`, whose runner pauses the deployments' schedules when it stops.
    runner = ServeRunner(pause_on_shutdown=True)
    for deployment in await build(reconcile_every):
        await runner.aadd_deployment(deployment)
        print(f"serving {deployment.name}")
    await runner.start()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m deployments.serve", description=__doc__)
    parser.add_argument(
        "--reconcile-every",
        type=float,
        default=RECONCILE_EVERY.total_seconds(),
        metavar="SECONDS",
        help=f"the safety net's interval (default {RECONCILE_EVERY.total_seconds():.0f})",
    )
    args = parser.parse_args()
    asyncio.run(main(timedelta(seconds=args.reconcile_every)))
