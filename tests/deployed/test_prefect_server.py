"""A real Prefect server (PostgreSQL) and a worker run the catalog's deployments: the scheduler
creates reconcile's runs, and a review event creates one for the event's branch."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun

from deployments.events import CLOSED, MERGED, proposed_change_event
from tests.deployed.conftest import (
    RUN,
    SHORT_INTERVAL,
    Deployed,
    PrefectApi,
    eventually,
    parameters_of,
    requires_stack,
    set_schedules,
)

pytestmark = [pytest.mark.deployed, requires_stack]


async def test_the_server_schedules_reconcile_and_a_worker_runs_it(
    deployed: Deployed, prefect: PrefectClient
) -> None:
    # Fails with SQLAlchemy 2.1: the scheduler's insert of the runs raises, and no run is created.
    started = time.monotonic()
    # A run the scheduler made in the moment between the deploy and the pause may have run already:
    # only the runs it makes from now on count.
    switched_on = datetime.now(UTC)
    await set_schedules(prefect, deployed.ids["reconcile"], active=True)
    try:

        async def two_completed() -> list[FlowRun] | None:
            runs = await deployed.runs(prefect, "reconcile")
            done = [
                r
                for r in runs
                if r.auto_scheduled
                and r.created is not None
                and r.created >= switched_on
                and r.state is not None
                and r.state.is_completed()
            ]
            return done if len(done) >= 2 else None

        completed = await eventually(two_completed, 300, "two scheduled reconcile runs completed")
    finally:
        await set_schedules(prefect, deployed.ids["reconcile"], active=False)
    print(
        f"two scheduled runs completed {time.monotonic() - started:.1f}s after the schedule was switched on"
    )
    first, second = sorted(completed, key=lambda r: r.expected_start_time or r.created)[:2]
    assert first.expected_start_time and second.expected_start_time
    assert (second.expected_start_time - first.expected_start_time) == SHORT_INTERVAL
    assert first.name == "reconcile"  # the flow itself ran (its run name), on the work pool's worker
    assert first.work_pool_name == "service-factory"
    assert parameters_of(first) == {}  # a scheduled run reconciles everything


async def test_a_review_event_runs_reconcile_for_its_branch(
    deployed: Deployed, prefect: PrefectClient, prefect_api: PrefectApi
) -> None:
    branches = {MERGED: f"t{RUN}-dia-0001-deliver", CLOSED: f"t{RUN}-dia-0002-modify"}
    events = [
        proposed_change_event(branches[MERGED], "merged", str(uuid.uuid4()), source="test"),
        proposed_change_event(branches[CLOSED], "closed", str(uuid.uuid4()), source="test"),
    ]
    async with prefect_api.http() as http:
        response = await http.post("/events", json=events)
        posted = time.monotonic()
    assert response.status_code == 204, response.text

    async def one_run_per_branch() -> dict[str, FlowRun] | None:
        runs = {parameters_of(r).get("branch"): r for r in await deployed.runs(prefect, "on-review")}
        found = {b: runs[b] for b in branches.values() if b in runs}
        return found if len(found) == len(branches) else None

    runs = await eventually(one_run_per_branch, 120, "a reconcile run for each event's branch")
    print(f"both runs created {time.monotonic() - posted:.1f}s after the events were posted")
    for branch, run in runs.items():
        assert parameters_of(run) == {"branch": branch}
        assert not run.auto_scheduled

    async def completed() -> list[FlowRun] | None:
        states = [await prefect.read_flow_run(r.id) for r in runs.values()]
        return states if all(s.state is not None and s.state.is_completed() for s in states) else None

    await eventually(completed, 240, "the event-triggered reconcile runs completed on the worker")
    print(f"both completed {time.monotonic() - posted:.1f}s after the events were posted")
