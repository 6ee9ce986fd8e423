"""The served deployments build, register with a Prefect server, and a deployed run waits for its
review suspended (no process held) until reconciliation resumes it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import Pause, PrefectHTTPStatusError
from prefect.flow_engine import run_flow_async

from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import ServiceStatus
from allocation.model import ChangeState
from allocation.results import Outcome, TransitionResult
from deployments.serve import build
from flows.deliver import deliver
from flows.modify import modify
from tests.flows.conftest import dia, on_main, proposed_changes, reconcile_now, request_service


async def test_deployments_build_with_schedule_and_triggers() -> None:
    built = {d.name: d for d in await build(sites=["ams01", "bru01", "lyn01", "par01"])}
    assert set(built) == {"request", "deliver", "modify", "decommission", "reconcile", "on-review"}
    reconcile = built["reconcile"]
    assert [s.schedule.interval for s in reconcile.schedules] == [timedelta(minutes=5)]  # type: ignore[union-attr]
    assert "infrahub.proposed_change.merged" in built["on-review"].triggers[0].expect  # type: ignore[union-attr]
    assert built["deliver"].triggers[0].expect == {"factory.service.requested"}  # type: ignore[union-attr]
    assert built["request"].parameters == {"announce": True}
    assert "params" in modify.parameters.properties  # a form in the UI, fed by the pydantic model
    ids = {name: await deployment.apply() for name, deployment in built.items()}  # triggers included

    # The forms: a site the inventory does not have is refused by the server itself, before any run.
    async with get_client() as client:
        request = {
            "service_identifier": "DIA-0099",
            "account_reference": "A",
            "bandwidth": "1000",
            "ip_package": "small",
        }
        with pytest.raises(PrefectHTTPStatusError, match="'xyz01' is not one of"):
            await client.create_flow_run_from_deployment(
                ids["request"], parameters={"params": {**request, "site": "xyz01"}}
            )
        accepted = await client.create_flow_run_from_deployment(
            ids["request"], parameters={"params": {**request, "site": "par01"}}
        )
        await client.delete_flow_run(accepted.id)
        deployed = await client.read_deployment(ids["deliver"])
    assert (
        deployed.enforce_parameter_schema
        and "local_wait" not in deployed.parameter_openapi_schema["properties"]
    )


async def test_deployed_run_suspends_and_reconciliation_resumes_it(inventory: EmbeddedInventory) -> None:
    deployment_id = await (await deliver.ato_deployment("deliver-suspend-test")).apply()
    await request_service(dia(5))
    async with get_client() as client:
        run = await client.create_flow_run_from_deployment(
            deployment_id, parameters={"params": {"service_identifier": "DIA-0005"}}
        )
    with pytest.raises(Pause):
        await run_flow_async(deliver, flow_run=run, parameters=run.parameters, return_type="state")
    async with get_client() as client:
        suspended = await client.read_flow_run(run.id)
    assert suspended.state is not None and suspended.state.name == "Suspended"
    assert (await on_main(inventory, "DIA-0005")).status is ServiceStatus.IN_DELIVERY

    report = await reconcile_now()
    assert report.waiting == ["DIA-0005"] and report.resumed_flow_runs == []  # still under review

    change = await inventory.get_proposed_change("dia-0005-deliver")
    assert change is not None
    await inventory.merge_proposed_change(change.id)
    report = await reconcile_now()
    assert report.resumed_flow_runs == [run.name]

    async with get_client() as client:
        resumed = await client.read_flow_run(run.id)
    state = await run_flow_async(
        deliver, flow_run=resumed, parameters=resumed.parameters, return_type="state"
    )
    result = await state.aresult()  # type: ignore[union-attr]
    assert isinstance(result, TransitionResult)
    assert result.outcome is Outcome.DONE and result.branch == "dia-0005-deliver"
    assert result.resources is not None
    assert (await on_main(inventory, "DIA-0005")).status is ServiceStatus.ACTIVE
    assert len(proposed_changes(inventory)) == 1  # the resumed run began nothing new


async def test_a_second_deployed_run_for_one_service_does_nothing_beside_the_first(
    inventory: EmbeddedInventory,
) -> None:
    """A retried API call without an idempotency key: the later run sees the earlier one under way."""
    deployment_id = await (await deliver.ato_deployment("deliver-duplicate-test")).apply()
    await request_service(dia(6))
    async with get_client() as client:
        first, second = [
            await client.create_flow_run_from_deployment(
                deployment_id, parameters={"params": {"service_identifier": "DIA-0006"}}
            )
            for _ in range(2)
        ]
    with pytest.raises(Pause):
        await run_flow_async(deliver, flow_run=first, parameters=first.parameters, return_type="state")
    state = await run_flow_async(deliver, flow_run=second, parameters=second.parameters, return_type="state")
    result = await state.aresult()  # type: ignore[union-attr]
    assert isinstance(result, TransitionResult)
    assert result.outcome is Outcome.WAITING and "already under way in flow run" in result.message
    assert proposed_changes(inventory) == [("dia-0006-deliver", ChangeState.OPEN)]
    async with get_client() as client:
        assert (await client.read_flow_run(first.id)).state.name == "Suspended"  # type: ignore[union-attr]
