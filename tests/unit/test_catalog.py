"""One catalog of deployments: prefect.yaml is its render, serve builds the same deployments."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import yaml
from prefect import Flow

from deployments import events
from deployments.catalog import WORK_POOL, catalog
from deployments.render import PREFECT_YAML, render
from deployments.serve import build, flow_of


def test_the_checked_in_prefect_yaml_is_the_render_of_the_catalog() -> None:
    assert PREFECT_YAML.read_text() == render(), "run: python -m deployments.render"


def test_prefect_yaml_puts_every_flow_on_the_work_pool() -> None:
    document = yaml.safe_load(render())
    deployments = {d["name"]: d for d in document["deployments"]}
    assert set(deployments) == {"request", "deliver", "modify", "decommission", "reconcile", "on-review"}
    assert {d["work_pool"]["name"] for d in deployments.values()} == {WORK_POOL}
    # Each worker resolves the checkout's folder on its own machine.
    assert document["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $FACTORY_HOME }}"}}
    ]
    reconcile = deployments["reconcile"]
    assert reconcile["schedules"] == [{"interval": 300.0}] and reconcile["concurrency_limit"] == 1
    assert reconcile["triggers"] == []
    on_review = deployments["on-review"]
    assert on_review["entrypoint"] == reconcile["entrypoint"] and on_review["concurrency_limit"] is None
    (trigger,) = on_review["triggers"]
    assert set(trigger["expect"]) == {events.MERGED, events.CLOSED}
    assert trigger["parameters"] == {
        "params": {"branch": "{{ event.resource['infrahub.proposed_change.branch'] }}"}
    }
    assert deployments["request"]["parameters"] == {"announce": True}


def test_every_entrypoint_is_a_flow_of_that_name() -> None:
    for deployment in catalog():
        flow = flow_of(deployment)
        assert isinstance(flow, Flow) and flow.name == deployment.function


def test_a_copy_for_tests_has_its_own_names_interval_and_job_variables() -> None:
    text = render(
        catalog(reconcile_every=timedelta(seconds=15)), name_suffix="-t1", job_variables={"env": {"X": "1"}}
    )
    deployments = {d["name"]: d for d in yaml.safe_load(text)["deployments"]}
    assert deployments["reconcile-t1"]["schedules"] == [{"interval": 15.0}]
    assert deployments["deliver-t1"]["work_pool"] == {"name": WORK_POOL, "job_variables": {"env": {"X": "1"}}}


async def test_serve_builds_the_same_deployments() -> None:
    built = {d.name: d for d in await build(reconcile_every=timedelta(seconds=30), sites=["par01"])}
    for deployment in catalog():
        served = built[deployment.name]
        assert served.description == deployment.description
        assert served.concurrency_limit == deployment.concurrency_limit
        assert [t.expect for t in served.triggers] == [set(t.expect) for t in deployment.triggers]  # type: ignore[union-attr]
    assert [s.schedule.interval for s in built["reconcile"].schedules] == [timedelta(seconds=30)]  # type: ignore[union-attr]


def test_a_deployment_form_offers_the_sites_and_leaves_out_what_only_local_runs_use() -> None:
    from deployments.forms import form_schema
    from flows.deliver import deliver
    from flows.request import request

    form = form_schema(request.parameters.model_dump(), ["par01", "ams01"])
    assert form["definitions"]["ServiceRequest"]["properties"]["site"]["enum"] == ["ams01", "par01"]
    deliver_form = form_schema(deliver.parameters.model_dump(), ["par01"])
    assert set(deliver_form["properties"]) == {"params"}
    assert "local_wait" in deliver.parameters.model_dump()["properties"]  # the flow itself keeps it


def test_forms_are_refused_when_the_inventory_knows_no_sites(tmp_path: Path) -> None:
    """Without sites the request form would take any site, and the run would fail later."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FACTORY_", "INFRAHUB_"))}
    env.update(FACTORY_BACKEND="embedded", FACTORY_DB=str(tmp_path / "empty.sqlite3"))
    done = subprocess.run(
        [sys.executable, "-m", "deployments.forms"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: the inventory knows no sites") and done.stderr.count("\n") == 1
