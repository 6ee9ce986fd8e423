"""Infrahub's webhook drives the flows: merging or closing a proposed change in Infrahub makes the
review event, with the change's branch, arrive at the Prefect server, and reconcile's run is
created for that branch.

This repository is registered in Infrahub as a read-only repository (its transform and query;
``webhook_checkout`` says why only those), the two webhooks of ``deployments/webhooks.py`` point
at the stack's ``/api/events``, and an architect merges one change and closes another through
Infrahub's GraphQL. Everything is removed
afterwards (webhooks, repository, branches; the proposed changes stay, merged and closed).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from infrahub_sdk import Config, InfrahubClient
from infrahub_sdk.exceptions import GraphQLError
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun

from allocation.settings import InfrahubSettings
from deployments import events, webhooks
from deployments.infrahub_transform import ProposedChangeToPrefect
from tests.deployed.conftest import RUN, Deployed, eventually, parameters_of, requires_stack
from tests.integration.conftest import requires_infrahub
from tests.support import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.deployed, requires_infrahub, requires_stack]

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


async def received(prefect_api: str, name: str, branch: str) -> dict[str, Any] | None:
    """The review event for ``branch`` as the Prefect server recorded it, if it arrived."""
    query = {
        "filter": {
            "event": {"name": [name]},
            "resource": {"labels": {events.BRANCH_LABEL: [branch]}},
        },
        "limit": 5,
    }
    async with httpx.AsyncClient(base_url=prefect_api) as http:
        response = await http.post("/events/filter", json=query)
    response.raise_for_status()
    found = response.json()["events"]
    return dict(found[0]) if found else None


async def test_a_merge_and_a_close_in_infrahub_reach_prefect_and_run_reconcile(
    deployed: Deployed, prefect: PrefectClient, prefect_api: str, tmp_path: Path
) -> None:
    client = infrahub_client()
    prefix = f"service-factory-test-{RUN}"
    branches = {"merged": f"wh-{RUN}-merged", "closed": f"wh-{RUN}-closed"}
    repository: str | None = None
    created: list[str] = []
    try:
        await webhook_checkout(tmp_path / "checkout", tmp_path / "service-factory.git")
        repository = await register_repository(
            client, tmp_path / "service-factory.git", f"service-factory-wh-{RUN}"
        )
        await imported(client, repository)
        webhook_ids = await webhooks.register(client, prefect_api, prefix=prefix)
        await automations_ready(client, webhook_ids)

        created.append(branches["merged"])
        to_merge = await open_change(client, branches["merged"])
        created.append(branches["closed"])
        to_close = await open_change(client, branches["closed"])
        await close(client, to_close)
        closed_at = time.monotonic()
        await merge(client, to_merge)
        merged_at = time.monotonic()

        merged_event = await eventually(
            lambda: received(prefect_api, events.MERGED, branches["merged"]),
            420,  # Infrahub's worker runs the webhook: tens of seconds when it is busy
            "the merged event in Prefect",
        )
        arrival = {"merged": time.monotonic() - merged_at}
        closed_event = await eventually(
            lambda: received(prefect_api, events.CLOSED, branches["closed"]),
            420,
            "the closed event in Prefect",
        )
        arrival["closed"] = time.monotonic() - closed_at
        print(f"event seen in Prefect (polled) after: {arrival}")

        assert merged_event["resource"]["prefect.resource.id"] == f"infrahub.proposed_change.{to_merge}"
        assert merged_event["resource"][events.STATE_LABEL] == "merged"
        assert merged_event["payload"]["source"] == "infrahub"
        assert closed_event["resource"][events.ID_LABEL] == to_close
        assert closed_event["resource"][events.STATE_LABEL] == "closed"

        async def runs_for_both() -> dict[str, FlowRun] | None:
            runs = {parameters_of(r).get("branch"): r for r in await deployed.runs(prefect, "on-review")}
            found = {b: runs[b] for b in branches.values() if b in runs}
            return found if len(found) == len(branches) else None

        runs = await eventually(runs_for_both, 120, "a reconcile run for each branch")
        for branch, run in runs.items():
            assert parameters_of(run) == {"branch": branch}
    finally:
        await webhooks.remove(client, prefix=prefix)
        for branch in created:
            await drop_branch(client, branch)
        if repository is not None:
            await gql(
                client,
                "mutation Forget($id: String!) { CoreReadOnlyRepositoryDelete(data: {id: $id}) { ok } }",
                id=repository,
            )
