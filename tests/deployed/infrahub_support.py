"""Infrahub's side of the deployed tests: this repository registered in the live Infrahub as a
read-only repository (its webhook transform and query only; ``webhook_checkout`` says why), the two
webhooks of ``deployments/webhooks.py`` pointed at the Prefect stack's ``/api/events``, and an
architect merging or closing proposed changes through Infrahub's GraphQL."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from infrahub_sdk import Config, InfrahubClient
from infrahub_sdk.exceptions import GraphQLError

from allocation.settings import InfrahubSettings
from deployments import events, webhooks
from deployments.infrahub_transform import ProposedChangeToPrefect
from tests.deployed.conftest import PrefectApi, eventually
from tests.support import ROOT

# Infrahub's own task manager, where a webhook becomes an automation (the infrahub-stack env file).
TASK_MANAGER = os.environ.get("INFRAHUB_STACK_TASK_MANAGER_URL", "http://127.0.0.1:4210/api")


def infrahub_client() -> InfrahubClient:
    settings = InfrahubSettings()
    token = settings.api_token.get_secret_value() if settings.api_token else None
    # Branch creation and deletion take tens of seconds on a busy shared server.
    return InfrahubClient(address=settings.address, config=Config(api_token=token, timeout=300))


async def gql(client: InfrahubClient, query: str, **variables: Any) -> dict[str, Any]:
    data: dict[str, Any] = await client.execute_graphql(query=query, variables=variables)
    return data


async def git(*args: str, cwd: Path = ROOT) -> None:
    process = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()


async def webhook_checkout(folder: Path, origin: Path) -> None:
    """This commit's files, with an ``.infrahub.yml`` of the webhook's part only (its query and
    transform, as the real file declares them), pushed to a bare ``origin``. The test is about the
    webhook: it leaves the shared Infrahub's schema and generators alone (another checkout may
    have loaded a newer schema, which an older one's import cannot replace)."""
    await git("init", "--quiet", str(folder))
    archive = await asyncio.create_subprocess_exec(
        "sh", "-c", f"git archive HEAD | tar -x -C {folder}", cwd=ROOT
    )
    assert await archive.wait() == 0
    config = yaml.safe_load((folder / ".infrahub.yml").read_text())
    transforms = [t for t in config["python_transforms"] if t["name"] == webhooks.TRANSFORM]
    queries = [q for q in config["queries"] if q["name"] in {ProposedChangeToPrefect.query}]
    assert transforms and queries, config
    (folder / ".infrahub.yml").write_text(
        yaml.safe_dump({"queries": queries, "python_transforms": transforms})
    )
    for args in (
        ("add", "-A"),
        (
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.invalid",
            "commit",
            "--quiet",
            "-m",
            "webhook",
        ),
        ("init", "--quiet", "--bare", str(origin)),
        ("push", "--quiet", str(origin), "HEAD:refs/heads/main"),
    ):
        await git(*args, cwd=folder)


async def register_repository(client: InfrahubClient, origin: Path, name: str) -> str:
    """A read-only repository (Infrahub's worker clones it from the local bare ``origin``)."""
    created = await gql(
        client,
        """mutation Register($name: String!, $location: String!) {
             CoreReadOnlyRepositoryCreate(data: {name: {value: $name}, location: {value: $location},
                                                 ref: {value: "main"}}) { object { id } }
           }""",
        name=name,
        location=str(origin),
    )
    repository: str = created["CoreReadOnlyRepositoryCreate"]["object"]["id"]
    return repository


async def imported(client: InfrahubClient, repository: str) -> None:
    """Infrahub's worker cloned the repository and imported its transform."""

    async def transform_there() -> bool:
        found = await gql(
            client,
            """query Imported($id: ID!, $transform: String!) {
                 CoreReadOnlyRepository(ids: [$id]) { edges { node { sync_status { value } } } }
                 CoreTransformPython(name__value: $transform) {
                   edges { node { repository { node { id } } } }
                 }
               }""",
            id=repository,
            transform=webhooks.TRANSFORM,
        )
        status = found["CoreReadOnlyRepository"]["edges"][0]["node"]["sync_status"]["value"]
        assert status not in ("error-import", "error"), found
        transforms = found["CoreTransformPython"]["edges"]
        return status == "in-sync" and any(
            t["node"]["repository"]["node"]["id"] == repository for t in transforms
        )

    await eventually(transform_there, 300, "the repository imported, with its transform")


async def automations_ready(client: InfrahubClient, webhook_ids: list[str]) -> None:
    """Infrahub turns each webhook into an automation of its task manager, asynchronously."""
    wanted = {f"webhook::{i}" for i in webhook_ids}

    async def all_there() -> bool:
        query = {"automations": {"name": {"any_": sorted(wanted)}}}
        async with httpx.AsyncClient(base_url=TASK_MANAGER) as http:
            response = await http.post("/automations/filter", json=query)
        return wanted <= {a["name"] for a in response.json()}

    for attempt in range(1, 4):
        try:
            # Minutes when Infrahub's task manager is busy: its automations lagged 3 min behind
            # its events (it holds over 1,300 automations; every test branch adds some).
            await eventually(all_there, 180, "Infrahub's automations for the webhooks")
            return
        except AssertionError:
            if attempt == 3:
                raise
        # The stack's task manager (SQLite) answers 503 when busy, and Infrahub's automation then
        # drops the configure run (seen: "Unexpected status from 'run-deployment' action: 503").
        # An update of the webhook asks for the configuration again.
        for webhook in webhook_ids:
            await gql(
                client,
                """mutation Touch($id: String!, $description: String!) {
                     CoreCustomWebhookUpdate(data: {id: $id, description: {value: $description}}) { ok }
                   }""",
                id=webhook,
                description=f"configured again ({attempt})",
            )


async def open_change(client: InfrahubClient, branch: str) -> str:
    await gql(
        client,
        """mutation Branch($name: String!) {
             BranchCreate(wait_until_completion: true, data: {name: $name, sync_with_git: false}) { ok }
           }""",
        name=branch,
    )
    created = await gql(
        client,
        """mutation Open($name: String!) {
             CoreProposedChangeCreate(data: {name: {value: $name}, source_branch: {value: $name},
                                             destination_branch: {value: "main"}}) { object { id } }
           }""",
        name=branch,
    )
    change: str = created["CoreProposedChangeCreate"]["object"]["id"]
    return change


async def change_state(client: InfrahubClient, change: str) -> str:
    found = await gql(
        client,
        "query State($id: ID!) { CoreProposedChange(ids: [$id]) { edges { node { state { value } } } } }",
        id=change,
    )
    state: str = found["CoreProposedChange"]["edges"][0]["node"]["state"]["value"]
    return state


async def merge(client: InfrahubClient, change: str) -> None:
    """As the architect merges in Infrahub; a merge whose checks are still running goes back to
    open, and is asked again."""
    deadline = time.monotonic() + 420
    while (state := await change_state(client, change)) != "merged":
        assert time.monotonic() < deadline, f"proposed change {change} still {state}"
        if state == "open":
            try:
                await gql(
                    client,
                    """mutation Merge($id: String!) {
                         CoreProposedChangeMerge(data: {id: $id}, wait_until_completion: false) { ok }
                       }""",
                    id=change,
                )
            except GraphQLError as error:
                # Infrahub could not start its merge task (its task manager answered 503 when
                # busy): the change stays open, and the architect asks again.
                if "Service Unavailable" not in str(error):
                    raise
                await asyncio.sleep(5)
        await asyncio.sleep(1)


async def close(client: InfrahubClient, change: str) -> None:
    await gql(
        client,
        """mutation Close($id: String!) {
             CoreProposedChangeUpdate(data: {id: $id, state: {value: "closed"}}) { ok }
           }""",
        id=change,
    )


async def drop_branch(client: InfrahubClient, branch: str) -> None:
    """Delete a test branch; a busy Infrahub may fail a deletion (500 from its task manager)."""
    for attempt in range(3):
        try:
            await gql(
                client,
                """mutation Drop($name: String!) {
                     BranchDelete(wait_until_completion: true, data: {name: $name}) { ok }
                   }""",
                name=branch,
            )
            return
        except GraphQLError as error:
            if "not found" in str(error).lower():
                return
            print(f"deleting branch {branch} (attempt {attempt + 1}): {error}")
            await asyncio.sleep(10)


async def received(prefect_api: PrefectApi, name: str, branch: str) -> dict[str, Any] | None:
    """The review event for ``branch`` as the Prefect server recorded it, if it arrived."""
    query = {
        "filter": {
            "event": {"name": [name]},
            "resource": {"labels": {events.BRANCH_LABEL: [branch]}},
        },
        "limit": 5,
    }
    async with prefect_api.http() as http:
        response = await http.post("/events/filter", json=query)
    response.raise_for_status()
    found = response.json()["events"]
    return dict(found[0]) if found else None


@asynccontextmanager
async def webhooks_to_prefect(
    client: InfrahubClient, prefect_api: PrefectApi, folder: Path, run: int
) -> AsyncIterator[None]:
    """Infrahub's review webhooks pointed at the Prefect stack while the block runs: the repository
    with their transform registered and imported, the webhooks configured as Infrahub automations;
    all removed afterwards (an import Infrahub never finished included)."""
    prefix = f"service-factory-test-{run}"
    repository: str | None = None
    try:
        if not await transform_registered(client):
            # As an operator does once: this repository registered, so Infrahub has the transform.
            # When a repository with it is already there (another test's, or a real one), the
            # webhooks use that one: two repositories cannot both define the transform's name.
            await webhook_checkout(folder / "checkout", folder / "service-factory.git")
            repository = await register_repository(
                client, folder / "service-factory.git", f"service-factory-wh-{run}"
            )
            await imported(client, repository)
        webhook_ids = await webhooks.register(
            client, prefect_api.url, prefix=prefix, auth_string=prefect_api.auth
        )
        await automations_ready(client, webhook_ids)
        yield
    finally:
        await webhooks.remove(client, prefix=prefix)
        if repository is not None:
            await gql(
                client,
                "mutation Forget($id: String!) { CoreReadOnlyRepositoryDelete(data: {id: $id}) { ok } }",
                id=repository,
            )


async def transform_registered(client: InfrahubClient) -> bool:
    found = await gql(
        client,
        "query T($name: String!) { CoreTransformPython(name__value: $name) { count } }",
        name=webhooks.TRANSFORM,
    )
    return bool(found["CoreTransformPython"]["count"])


async def change_of(client: InfrahubClient, branch: str) -> tuple[str, str] | None:
    """The id and state of the proposed change from ``branch``, once there is one."""
    found = await gql(
        client,
        """query Change($branch: String!) {
             CoreProposedChange(source_branch__value: $branch) { edges { node { id state { value } } } }
           }""",
        branch=branch,
    )
    edges = found["CoreProposedChange"]["edges"]
    return (edges[0]["node"]["id"], edges[0]["node"]["state"]["value"]) if edges else None
