"""Smoke test of a running Infrahub: schema, branch, proposed change pipeline and merge.

Run it with any Python that has infrahub-sdk, after `stack start`:

    . .infrahub-stack/env
    "$INFRAHUB_STACK_VENV/bin/python" scripts/infrahub-stack/verify.py          # full check
    /path/to/other/venv/bin/python scripts/infrahub-stack/verify.py --client-only  # SDK compatibility

It reads INFRAHUB_ADDRESS and INFRAHUB_API_TOKEN. It loads a one-node schema in the
`Stacksmoke` namespace (harmless beside any other schema), so it can run on a shared stack.
Exit code 0 when every step passed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import sys
import time

from infrahub_sdk import Config, InfrahubClient

SCHEMA = {
    "version": "1.0",
    "nodes": [
        {
            "name": "Widget",
            "namespace": "Stacksmoke",
            "label": "Stack smoke widget",
            "human_friendly_id": ["name__value"],
            "attributes": [
                {"name": "name", "kind": "Text", "unique": True},
                {"name": "size", "kind": "Number", "optional": True},
            ],
        }
    ],
}

TASKS_QUERY = """
query Tasks {
  InfrahubTask(limit: 200) {
    edges { node { title state related_node } }
  }
}
"""

VALIDATIONS_QUERY = """
query Validations($id: ID!) {
  CoreProposedChange(ids: [$id]) {
    edges { node {
      state { value }
      validations { edges { node { display_label state { value } conclusion { value } } } }
    } }
  }
}
"""

MERGE_MUTATION = """
mutation Merge($id: String!) {
  CoreProposedChangeMerge(data: {id: $id}, wait_until_completion: true) { ok }
}
"""


def step(name: str, started: float, detail: str = "") -> None:
    print(f"  ok  {name:<44} {time.monotonic() - started:6.1f}s  {detail}", flush=True)


async def client_checks(client: InfrahubClient, suffix: str) -> None:
    t = time.monotonic()
    version = await client.get_version()
    step("get_version", t, f"server {version}")

    t = time.monotonic()
    branch = await client.branch.create(
        branch_name=f"client-{suffix}", sync_with_git=False, description="stack check"
    )
    step("create branch", t, branch.name)

    t = time.monotonic()
    schema = await client.schema.all(branch=branch.name)
    step("query schema on the branch", t, f"{len(schema)} kinds")

    t = time.monotonic()
    accounts = await client.all(kind="CoreAccount")
    step("query CoreAccount", t, f"{len(accounts)} accounts")

    t = time.monotonic()
    await client.branch.delete(branch.name)
    step("delete branch", t)


async def full_checks(client: InfrahubClient, suffix: str, pipeline_timeout: float) -> bool:
    t = time.monotonic()
    response = await client.schema.load(schemas=[SCHEMA], wait_until_converged=True)
    if response.errors:
        print(f"  FAIL schema load: {response.errors}")
        return False
    step("load schema Stacksmoke", t, "changed" if response.schema_updated else "already loaded")

    t = time.monotonic()
    branch = await client.branch.create(
        branch_name=f"smoke-{suffix}", sync_with_git=False, description="stack smoke"
    )
    step("create branch", t, branch.name)

    t = time.monotonic()
    widget = await client.create(kind="StacksmokeWidget", branch=branch.name, name=f"widget-{suffix}", size=3)
    await widget.save()
    step("create StacksmokeWidget on the branch", t, widget.id)

    t = time.monotonic()
    pc = await client.create(
        kind="CoreProposedChange",
        name=f"smoke {suffix}",
        source_branch=branch.name,
        destination_branch="main",
    )
    await pc.save()
    step("create CoreProposedChange", t, pc.id)

    # The pipeline runs on the task worker: it creates validators and finishes them.
    t = time.monotonic()
    deadline = t + pipeline_timeout
    validations: list[dict] = []
    while time.monotonic() < deadline:
        data = await client.execute_graphql(query=VALIDATIONS_QUERY, variables={"id": pc.id})
        node = data["CoreProposedChange"]["edges"][0]["node"]
        validations = [e["node"] for e in node["validations"]["edges"]]
        if validations and all(v["state"]["value"] == "completed" for v in validations):
            break
        await asyncio.sleep(2)
    summary = ", ".join(
        f"{v['display_label']}={v['state']['value']}/{v['conclusion']['value']}" for v in validations
    )
    if not validations or not all(v["state"]["value"] == "completed" for v in validations):
        print(f"  FAIL proposed change pipeline did not complete in {pipeline_timeout:.0f}s: [{summary}]")
        return False
    step("proposed change pipeline (task worker)", t, summary)

    t = time.monotonic()
    merged = await client.execute_graphql(query=MERGE_MUTATION, variables={"id": pc.id})
    if not merged["CoreProposedChangeMerge"]["ok"]:
        print(f"  FAIL merge: {merged}")
        return False
    step("CoreProposedChangeMerge", t)

    t = time.monotonic()
    pc_after = await client.get(kind="CoreProposedChange", id=pc.id)
    on_main = await client.get(kind="StacksmokeWidget", name__value=f"widget-{suffix}", branch="main")
    if pc_after.state.value != "merged" or on_main.size.value != 3:
        print(f"  FAIL after merge: state={pc_after.state.value}, widget on main size={on_main.size.value}")
        return False
    step("widget on main, proposed change merged", t, f"state={pc_after.state.value}")
    t = time.monotonic()
    tasks = await client.execute_graphql(query=TASKS_QUERY)
    edges = [e for e in tasks["InfrahubTask"]["edges"] if e["node"]["related_node"] == pc.id]
    states: dict[str, int] = {}
    for edge in edges:
        states[edge["node"]["state"]] = states.get(edge["node"]["state"], 0) + 1
    step("tasks recorded for the proposed change", t, f"{len(edges)} tasks {states}")

    return True


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--client-only", action="store_true", help="only version, branch and schema queries")
    parser.add_argument("--pipeline-timeout", type=float, default=300)
    args = parser.parse_args()

    address = os.environ.get("INFRAHUB_ADDRESS", "http://127.0.0.1:8000")
    token = os.environ.get("INFRAHUB_API_TOKEN")
    if not token:
        print("INFRAHUB_API_TOKEN is not set: source .infrahub-stack/env first", file=sys.stderr)
        return 2
    sdk = (
        importlib.metadata.version("infrahub-sdk")
        if _has_dist("infrahub-sdk")
        else "bundled with infrahub-server"
    )
    print(f"Infrahub {address}, infrahub-sdk {sdk}, python {sys.version.split()[0]}")
    client = InfrahubClient(address=address, config=Config(api_token=token, timeout=120))
    suffix = time.strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    await client_checks(client, suffix)
    ok = True
    if not args.client_only:
        ok = await full_checks(client, suffix, args.pipeline_timeout)
    print(f"{'PASSED' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


def _has_dist(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
