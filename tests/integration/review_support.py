"""What the review tests (and bench/review_pipeline.py) do on a live Infrahub: register this commit as
a repository, read a proposed change's pipeline and its artifacts, ask Infrahub itself to merge."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from allocation.model import MAIN
from allocation.settings import InfrahubSettings
from tests.integration.conftest import sdk_query
from tests.support import ROOT

CHECK = "Check: service_review"
DEVICE_GROUPS_PROBE = 'DcimDevice(member_of_groups__name__value: "dedicated_internet_edge_routers") { count }'

REPOSITORY = """
query Repository($id: ID!) {
  CoreReadOnlyRepository(ids: [$id]) { edges { node { sync_status { value } } } }
  CoreArtifactDefinition { edges { node { name { value } } } }
  CoreCheckDefinition { edges { node { name { value } } } }
  CoreGeneratorDefinition { edges { node { name { value } } } }
}
"""

VALIDATORS = """
query Validators($id: ID!) {
  CoreProposedChange(ids: [$id]) { edges { node {
    state { value }
    validations { edges { node {
      display_label state { value } conclusion { value } started_at { value } completed_at { value }
      checks { edges { node { conclusion { value } message { value } } } }
    } } }
  } } }
}
"""

ARTIFACTS = """
query Artifacts {
  CoreArtifact(name__value: "customer-config") {
    edges { node { status { value } storage_id { value } checksum { value } object { node { display_label } } } }
  }
}
"""


@dataclass(frozen=True)
class Validator:
    state: str
    conclusion: str
    started: datetime | None
    completed: datetime | None
    messages: list[str]


def _when(text: Any) -> datetime | None:
    return datetime.fromisoformat(str(text)) if text else None


async def run(*args: str, cwd: Path = ROOT) -> str:
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()
    return out.decode()


async def ensure_device_groups() -> None:
    """The artifacts' target groups (data/08_device_groups.yml), loaded once, as the bootstrap does."""
    data = await sdk_query(f"query {{ {DEVICE_GROUPS_PROBE} }}")
    if not data["DcimDevice"]["count"]:
        infrahubctl = str(Path(sys.executable).parent / "infrahubctl")
        await run(infrahubctl, "object", "load", "data/08_device_groups.yml")


REVIEW_PARTS = ("generator_definitions", "jinja2_transforms", "artifact_definitions", "check_definitions")


async def review_checkout(folder: Path, origin: Path) -> None:
    """This commit's files with an ``.infrahub.yml`` of the parts a proposed change's pipeline runs
    (the generator, the configuration transforms and their artifact definitions, the check, and
    their queries, as the real file declares them), pushed to a bare ``origin``. The shared
    Infrahub's schema and objects are the bootstrap's, and the webhook part stays with the tests that
    register it: Infrahub's names are global, and two registrations declaring one query fail each
    other's import."""
    await run("git", "init", "--quiet", str(folder))
    await run("sh", "-c", f"git archive HEAD | tar -x -C {folder}")
    config = yaml.safe_load((folder / ".infrahub.yml").read_text())
    kept: dict[str, Any] = {part: config[part] for part in REVIEW_PARTS}
    used = {t["query"] for t in config["jinja2_transforms"] + config["generator_definitions"]} | {
        "service_review"
    }
    kept["queries"] = [q for q in config["queries"] if q["name"] in used]
    assert len(kept["queries"]) == len(used), config
    (folder / ".infrahub.yml").write_text(yaml.safe_dump(kept, sort_keys=False))
    await run("git", "add", "-A", cwd=folder)
    await run(
        "git", "-c", "user.name=test", "-c", "user.email=test@example.invalid",
        "commit", "--quiet", "-m", "review", cwd=folder,
    )  # fmt: skip
    await run("git", "init", "--quiet", "--bare", str(origin))
    await run("git", "push", "--quiet", str(origin), "HEAD:refs/heads/main", cwd=folder)


@asynccontextmanager
async def registered(workdir: Path, name: str) -> AsyncIterator[str]:
    """This commit registered as a read-only repository (the worker clones it from a local bare
    repository): its transforms, artifact definitions and check are live until the block ends."""
    await ensure_device_groups()
    await _definitions_gone()
    origin = workdir / "service-factory.git"
    await review_checkout(workdir / "checkout", origin)
    created = await sdk_query(
        """mutation Register($name: String!, $location: String!) {
             CoreReadOnlyRepositoryCreate(data: {name: {value: $name}, location: {value: $location}, ref: {value: "main"}}) {
               object { id }
             }
           }""",
        {"name": name, "location": str(origin)},
    )
    repository = str(created["CoreReadOnlyRepositoryCreate"]["object"]["id"])
    asked_again = time.monotonic() + 180
    try:
        async with asyncio.timeout(600):  # the worker clones, then imports .infrahub.yml
            while True:
                found = await sdk_query(REPOSITORY, {"id": repository})
                status = found["CoreReadOnlyRepository"]["edges"][0]["node"]["sync_status"]["value"]
                assert status not in ("error-import", "error"), found
                if status == "unknown" and time.monotonic() > asked_again:
                    # A busy task manager (its SQLite locked) can lose the import Infrahub submits on
                    # creation: ask for it again, once.
                    asked_again = float("inf")
                    await sdk_query(
                        """mutation Import($id: String!) {
                             InfrahubReadOnlyRepositoryImportLastCommit(data: {id: $id}) { ok } }""",
                        {"id": repository},
                    )
                definitions = {e["node"]["name"]["value"] for e in found["CoreArtifactDefinition"]["edges"]}
                checks = {e["node"]["name"]["value"] for e in found["CoreCheckDefinition"]["edges"]}
                generators = {e["node"]["name"]["value"] for e in found["CoreGeneratorDefinition"]["edges"]}
                if (
                    status == "in-sync"
                    and {"core_switch_config", "edge_router_config"} <= definitions
                    and "service_review" in checks
                    and "dedicated_internet" in generators
                ):
                    break
                await asyncio.sleep(3)
        await _rendered_on_main()
        yield repository
    finally:
        await sdk_query(
            """mutation Forget($id: String!) { CoreReadOnlyRepositoryDelete(data: {id: $id}) { ok } }""",
            {"id": repository},
        )
        await _definitions_gone()


async def _rendered_on_main(seconds: float = 600) -> None:
    """The import renders every device's configuration on main, and records for each artifact the
    query group Infrahub later finds the artifacts a change impacts by. A branch created before a
    group exists on main cannot see it (branches are isolated) and its change re-renders nothing:
    wait until every target has its group, for a bounded time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = await sdk_query(
            """query {
                 targets: CoreStandardGroup(name__values: ["dedicated_internet_core_switches", "dedicated_internet_edge_routers"]) {
                   edges { node { members { count } } }
                 }
                 CoreGraphQLQuery(name__values: ["core_switch_config", "edge_router_config"]) { edges { node { id } } }
               }"""
        )
        targets = sum(e["node"]["members"]["count"] for e in data["targets"]["edges"])
        queries = [e["node"]["id"] for e in data["CoreGraphQLQuery"]["edges"]]
        groups = await sdk_query(
            "query G($ids: [ID]) { CoreGraphQLQueryGroup(query__ids: $ids) { count } }", {"ids": queries}
        )
        rendered = await artifacts(MAIN)
        ready = [device for device, (status, _) in rendered.items() if status == "Ready"]
        if queries and len(ready) >= targets and groups["CoreGraphQLQueryGroup"]["count"] >= targets:
            return
        await asyncio.sleep(5)


async def delete_branch(name: str, seconds: float = 600) -> None:
    """Delete a branch; on a busy Infrahub the deletion outlasts the request: wait for it."""
    try:
        await sdk_query(
            "mutation D($n: String!) { BranchDelete(wait_until_completion: true, data: {name: $n}) { ok } }",
            {"n": name},
        )
    except Exception:  # a timeout: the deletion goes on as an Infrahub task
        deadline = time.monotonic() + seconds
        while (await sdk_query("query B($n: String!) { Branch(name: $n) { name } }", {"n": name}))["Branch"]:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(3)


OURS = ["core_switch_config", "edge_router_config", "service_review", "dedicated_internet"]
OUR_NAMES = f"""query {{
  CoreArtifactDefinition(name__values: {OURS}) {{ count }}
  CoreCheckDefinition(name__values: {OURS}) {{ count }}
  CoreGraphQLQuery(name__values: {OURS}) {{ count }}
  CoreTransformation(name__values: {OURS}) {{ count }}
  CoreGeneratorDefinition(name__values: {OURS}) {{ count }}
}}""".replace("'", '"')


async def _definitions_gone(seconds: float = 600) -> None:
    """The definitions a repository brought go with it, not always at once, and another registration
    (the deployed tests register the webhook part) may hold the same names. A registration made while
    any remains fails its import on their names: wait, for a bounded time, until none is left."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = await sdk_query(OUR_NAMES)
        if not any(kind["count"] for kind in found.values()):
            return
        await asyncio.sleep(3)


async def validators(change_id: str) -> tuple[str, dict[str, Validator]]:
    data = await sdk_query(VALIDATORS, {"id": change_id})
    node = data["CoreProposedChange"]["edges"][0]["node"]
    found: dict[str, Validator] = {}
    for edge in node["validations"]["edges"]:
        v = edge["node"]
        messages = [
            line.removeprefix("Message: ")
            for check in v["checks"]["edges"]
            for line in str(check["node"]["message"]["value"] or "").splitlines()
            if line.startswith("Message: ")
        ]
        found[v["display_label"]] = Validator(
            state=v["state"]["value"],
            conclusion=v["conclusion"]["value"],
            started=_when(v["started_at"]["value"]),
            completed=_when(v["completed_at"]["value"]),
            messages=messages,
        )
    return str(node["state"]["value"]), found


async def pipeline(
    change_id: str, after: datetime | None = None, seconds: float = 1500
) -> dict[str, Validator]:
    """The change's validators once its pipeline has finished: the service review check and both
    artifact validators completed (the check started after ``after``, when given). Infrahub runs
    every pipeline through its one task worker, shared with every other user of the stack: on a busy
    machine a pipeline waits minutes before it starts."""
    wanted = {CHECK, "Artifact Validator: core_switch_config", "Artifact Validator: edge_router_config"}
    retry_at = time.monotonic() + seconds / 2
    async with asyncio.timeout(seconds):
        while True:
            _, found = await validators(change_id)
            done = wanted <= set(found) and all(found[w].state == "completed" for w in wanted)
            fresh = after is None or (found.get(CHECK) and (found[CHECK].started or after) > after)
            if done and fresh and all(v.state == "completed" for v in found.values()):
                return found
            if time.monotonic() > retry_at:
                # A validator whose task the overloaded task manager lost stays in progress for
                # good: run the checks again, as the architect does in the UI, once.
                retry_at = float("inf")
                after = await request_checks(change_id)
            await asyncio.sleep(3)


async def request_checks(change_id: str) -> datetime:
    """The architect's "run the checks again"; returns when it was asked."""
    asked = datetime.now().astimezone()
    await sdk_query(
        """mutation Again($id: String!) { CoreProposedChangeRunCheck(data: {id: $id, check_type: ALL}) { ok } }""",
        {"id": change_id},
    )
    return asked


async def merge_in_infrahub(change_id: str, seconds: float = 300) -> str:
    """Merge as the architect does in Infrahub's UI (no client of ours in between); the state the
    change ends in once Infrahub has decided: merged, or open again when it refused."""
    await sdk_query(
        """mutation Merge($id: String!) { CoreProposedChangeMerge(data: {id: $id}, wait_until_completion: false) { ok } }""",
        {"id": change_id},
    )
    seen_merging = False
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state, _ = await validators(change_id)
        seen_merging = seen_merging or state == "merging"
        if state == "merged" or (state == "open" and seen_merging):
            return state
        await asyncio.sleep(2)
    raise TimeoutError(f"proposed change {change_id} still undecided after {seconds}s")


async def artifacts(branch: str) -> dict[str, tuple[str, str | None]]:
    """device -> (status, checksum) of its customer-config artifact on ``branch``."""
    data = await sdk_query(ARTIFACTS, branch=branch)
    return {
        e["node"]["object"]["node"]["display_label"]: (
            e["node"]["status"]["value"],
            e["node"]["checksum"]["value"],
        )
        for e in data["CoreArtifact"]["edges"]
    }


async def artifact(branch: str, device: str) -> str:
    """The content of a device's customer-config artifact on ``branch``."""
    data = await sdk_query(ARTIFACTS, branch=branch)
    node = next(
        e["node"]
        for e in data["CoreArtifact"]["edges"]
        if e["node"]["object"]["node"]["display_label"] == device
    )
    return await _get(f"/api/storage/object/{node['storage_id']['value']}")


async def artifact_diff(branch: str) -> dict[str, dict[str, Any]]:
    """The artifacts a branch changes, as the proposed change's Artifacts tab shows them (by device)."""
    found = await _get(f"/api/diff/artifacts?branch={branch}", as_json=True)
    return {str(item.get("target", {}).get("display_label")): item for item in found.values()}


async def _get(path: str, as_json: bool = False) -> Any:
    settings = InfrahubSettings()
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.get(
            f"{str(settings.address).rstrip('/')}{path}", headers={"X-INFRAHUB-KEY": token}
        )
    response.raise_for_status()
    return response.json() if as_json else response.text


def stanzas(config: str) -> list[str]:
    """The blocks of an EOS-style configuration (between ``!`` lines), header comment left out."""
    blocks = [b.strip("\n") for b in config.split("!\n")]
    return [b for b in blocks if b not in ("", "!") and not b.startswith("! ")]
