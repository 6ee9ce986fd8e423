"""Deployed tests: a real Prefect server on PostgreSQL with a worker (``scripts/prefect-stack``),
driven through its REST API as an operator would.

Opt-in (``FACTORY_TEST_DEPLOYED=1``, set by ``scripts/run-tests``): the stack listens on fixed
ports (PREFECT_STACK_API_PORT, PREFECT_STACK_PG_PORT and PREFECT_STACK_DIR move it), so only one
checkout on a machine should run them at a time on the defaults. The session starts the stack
unless it is running, and stops it afterwards if it started it; its API asks for the credential the
stack's env file holds (PREFECT_API_AUTH_STRING), which every client here sends.

The deployments under test are the catalog's, rendered to a prefect.yaml as the real one is and
deployed with ``prefect deploy --all``, under names ending ``-t<run>``, with a short reconcile
interval and an embedded inventory of their own (job variables), so that they never touch the
operator's deployments or data; they are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    DeploymentFilterName,
    FlowRunFilter,
)
from prefect.client.schemas.objects import FlowRun

from allocation.backends.embedded import EmbeddedInventory
from deployments.catalog import catalog
from deployments.render import render
from deployments.webhooks import basic_authorization
from tests.support import DATA, ROOT

STACK = ROOT / "scripts" / "prefect-stack" / "stack"
RUN = int(time.time()) % 100000
SUFFIX = f"-t{RUN}"
SHORT_INTERVAL = timedelta(seconds=15)
T = TypeVar("T")

requires_stack = pytest.mark.skipif(
    not os.environ.get("FACTORY_TEST_DEPLOYED"),
    reason="deployed tests are opt-in: FACTORY_TEST_DEPLOYED=1 (they start scripts/prefect-stack)",
)


def stack(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(STACK), *args], capture_output=True, text=True, check=check, timeout=600
    )


@dataclass(frozen=True)
class PrefectApi:
    """The stack's API: its URL and the credential it asks for."""

    url: str
    auth: str

    @classmethod
    def from_env_file(cls, text: str) -> PrefectApi:
        """From the env file ``stack env`` prints (``export NAME=value`` lines, shell-quoted)."""
        found = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1)
            for line in text.splitlines()
            if line.startswith("export ")
        )
        return cls(url=found["PREFECT_API_URL"], auth=found["PREFECT_API_AUTH_STRING"])

    def env(self) -> dict[str, str]:
        """What a Prefect client process needs in its environment."""
        return {"PREFECT_API_URL": self.url, "PREFECT_API_AUTH_STRING": self.auth}

    def client(self) -> PrefectClient:
        return PrefectClient(api=self.url, auth_string=self.auth)

    def http(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": basic_authorization(self.auth)}, **kwargs
        )


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[PrefectApi]:
    """The PostgreSQL Prefect stack's API; started (and stopped afterwards) unless running."""
    running = stack("status", check=False).returncode == 0
    if not running:
        started = stack("start", "--db", "postgres", check=False)
        assert started.returncode == 0, started.stdout + started.stderr
        print(started.stdout)
    yield PrefectApi.from_env_file(stack("env").stdout)
    if not running:
        stack("stop")


@pytest.fixture
async def prefect(prefect_api: PrefectApi) -> AsyncIterator[PrefectClient]:
    """A client of the stack, whatever PREFECT_API_URL the session set (the flow tests' harness)."""
    async with prefect_api.client() as client:
        yield client


async def eventually(probe: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    """The first truthy answer of ``probe``, polled for ``within`` seconds (a deadline, not a target)."""
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what}")
        await asyncio.sleep(0.25)


@dataclass(frozen=True)
class Deployed:
    ids: dict[str, UUID]  # catalog name -> id of its test copy
    inventory: Path | None  # the embedded file, None on Infrahub

    async def runs(self, client: PrefectClient, name: str) -> list[FlowRun]:
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[self.ids[name]])),
        )


def prefect_cli(prefect_api: PrefectApi, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    state = Path(os.environ.get("PREFECT_STACK_DIR") or ROOT / ".prefect-stack")
    env.update(prefect_api.env(), PREFECT_HOME=str(state / "client"))
    return subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), "--no-prompt", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def deploy_copies(
    prefect_api: PrefectApi, folder: Path, suffix: str, env: dict[str, str]
) -> dict[str, UUID]:
    """The catalog's deployments under names ending ``suffix``, deployed with ``prefect deploy --all``
    from a rendered prefect.yaml; their runs get ``env`` (the worker's environment holds the rest)."""
    specs = [dataclasses.replace(d, tags=(*d.tags, "test")) for d in catalog(reconcile_every=SHORT_INTERVAL)]
    prefect_yaml = folder / "prefect.yaml"
    prefect_yaml.write_text(render(specs, name_suffix=suffix, job_variables={"env": env}))
    result = prefect_cli(prefect_api, "deploy", "--all", "--prefect-file", str(prefect_yaml))
    assert result.returncode == 0, result.stdout + result.stderr
    async with prefect_api.client() as client:
        found = await client.read_deployments(
            deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=[s.name + suffix for s in specs])
            )
        )
        ids = {d.name.removesuffix(suffix): d.id for d in found}
        assert set(ids) == {s.name for s in specs}
        # Only what a test asks for runs on schedule: the copy's reconcile starts paused.
        await set_schedules(client, ids["reconcile"], active=False)
    return ids


async def remove_copies(prefect_api: PrefectApi, ids: dict[str, UUID]) -> None:
    async with prefect_api.client() as client:
        for deployment_id in ids.values():
            # Deleting a deployment leaves the automations of its triggers behind.
            await client.delete_resource_owned_automations(f"prefect.deployment.{deployment_id}")
            await client.delete_deployment(deployment_id)


@pytest.fixture(scope="session")
async def deployed(
    prefect_api: PrefectApi, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployed]:
    """The catalog's deployments on an embedded inventory of their own."""
    folder = tmp_path_factory.mktemp("deployed")
    inventory = folder / "inventory.sqlite3"
    # Loaded before anything is deployed: a flow started by another test's event (the copies' triggers
    # match every review event) opens the file too, and would otherwise find it empty.
    loading = EmbeddedInventory(inventory)
    loading.load(DATA)
    await loading.close()
    env = {"FACTORY_BACKEND": "embedded", "FACTORY_DB": str(inventory)}
    ids = await deploy_copies(prefect_api, folder, SUFFIX, env)
    try:
        yield Deployed(ids=ids, inventory=inventory)
    finally:
        await remove_copies(prefect_api, ids)


@pytest.fixture(scope="session")
async def deployed_on_infrahub(
    prefect_api: PrefectApi, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployed]:
    """The catalog's deployments on the live Infrahub. Its address goes with the deployments; its
    token stays in the worker's environment (scripts/run-tests starts the worker with it), never in
    Prefect's database."""
    address = os.environ.get("INFRAHUB_ADDRESS")
    if not address:
        pytest.skip("INFRAHUB_ADDRESS is not set")
    folder = tmp_path_factory.mktemp("deployed-infrahub")
    env = {"FACTORY_BACKEND": "infrahub", "INFRAHUB_ADDRESS": address}
    ids = await deploy_copies(prefect_api, folder, SUFFIX + "i", env)
    try:
        yield Deployed(ids=ids, inventory=None)
    finally:
        await remove_copies(prefect_api, ids)


async def set_schedules(client: PrefectClient, deployment_id: UUID, *, active: bool) -> None:
    """Switch a deployment's schedules; switched off, the server drops the runs it scheduled."""
    for schedule in await client.read_deployment_schedules(deployment_id):
        await client.update_deployment_schedule(deployment_id, schedule.id, active=active)


def parameters_of(run: FlowRun) -> dict[str, Any]:
    params = run.parameters.get("params") or {}
    return dict(params) if isinstance(params, dict) else {}
