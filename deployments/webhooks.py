"""Declare in Infrahub the webhooks that send review outcomes to the Prefect server.

    python -m deployments.webhooks --prefect-api-url http://prefect.example:4200/api
    python -m deployments.webhooks --remove

Two ``CoreCustomWebhook`` nodes, both through the transform ``prefect_review_event`` of this
repository (``.infrahub.yml``: register the repository in Infrahub first, as a read-only
repository), posting to ``<PREFECT_API_URL>/events``:

- on ``infrahub.proposed_change.merged`` (every merge, whatever started it);
- on ``infrahub.node.updated`` of ``CoreProposedChange`` (the transform keeps only a state that
  became ``closed`` or ``canceled``; Infrahub has no event of its own for a closed change).

A webhook takes one event type, hence two. The Prefect server's address differs per installation,
so it is a parameter here rather than an object file the repository import would re-apply on
every commit. Running it again updates the webhooks in place (upsert by name).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass

from infrahub_sdk import Config, InfrahubClient

from allocation.settings import InfrahubSettings

TRANSFORM = "prefect_review_event"
PREFIX = "service-factory"


@dataclass(frozen=True)
class Webhook:
    suffix: str
    event_type: str
    node_kind: str | None
    description: str


WEBHOOKS = (
    Webhook(
        "proposed change merged",
        "infrahub.proposed_change.merged",
        None,
        "Tells the service factory's Prefect a proposed change was merged",
    ),
    Webhook(
        "proposed change closed",
        "infrahub.node.updated",
        "CoreProposedChange",
        "Tells the service factory's Prefect a proposed change was closed",
    ),
)

TRANSFORM_QUERY = """
query Transform($name: String!) { CoreTransformPython(name__value: $name) { edges { node { id } } } }
"""

UPSERT = """
mutation Upsert($name: String!, $event: String!, $kind: String, $url: String!, $description: String!,
                $transform: String!) {
  CoreCustomWebhookUpsert(data: {
    name: {value: $name}, event_type: {value: $event}, node_kind: {value: $kind},
    branch_scope: {value: "all_branches"}, url: {value: $url}, active: {value: true},
    description: {value: $description}, transformation: {id: $transform}
  }) { ok object { id } }
}
"""

FIND = """
query Find($names: [String]) { CoreCustomWebhook(name__values: $names) { edges { node { id } } } }
"""

DELETE = "mutation Delete($id: String!) { CoreCustomWebhookDelete(data: {id: $id}) { ok } }"


def names(prefix: str = PREFIX) -> list[str]:
    return [f"{prefix}: {w.suffix}" for w in WEBHOOKS]


def events_url(prefect_api_url: str) -> str:
    return prefect_api_url.rstrip("/") + "/events"


async def register(client: InfrahubClient, prefect_api_url: str, prefix: str = PREFIX) -> list[str]:
    """Create or update the webhooks; their ids."""
    found = await client.execute_graphql(query=TRANSFORM_QUERY, variables={"name": TRANSFORM})
    edges = found["CoreTransformPython"]["edges"]
    if not edges:
        raise LookupError(
            f"no transform {TRANSFORM!r} in Infrahub: register this repository first (.infrahub.yml)"
        )
    ids = []
    for name, webhook in zip(names(prefix), WEBHOOKS, strict=True):
        result = await client.execute_graphql(
            query=UPSERT,
            variables={
                "name": name,
                "event": webhook.event_type,
                "kind": webhook.node_kind,
                "url": events_url(prefect_api_url),
                "description": webhook.description,
                "transform": edges[0]["node"]["id"],
            },
        )
        ids.append(str(result["CoreCustomWebhookUpsert"]["object"]["id"]))
    return ids


async def remove(client: InfrahubClient, prefix: str = PREFIX) -> int:
    """Delete the webhooks; how many there were."""
    found = await client.execute_graphql(query=FIND, variables={"names": names(prefix)})
    for edge in found["CoreCustomWebhook"]["edges"]:
        await client.execute_graphql(query=DELETE, variables={"id": edge["node"]["id"]})
    return len(found["CoreCustomWebhook"]["edges"])


def client_from_settings() -> InfrahubClient:
    settings = InfrahubSettings()
    token = settings.api_token.get_secret_value() if settings.api_token else None
    return InfrahubClient(address=settings.address, config=Config(api_token=token))


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.webhooks", description=__doc__)
    parser.add_argument("--prefect-api-url", default=os.environ.get("PREFECT_API_URL"))
    parser.add_argument("--remove", action="store_true", help="delete the webhooks")
    parser.add_argument("--name-prefix", default=PREFIX)
    args = parser.parse_args(argv)
    client = client_from_settings()
    if args.remove:
        print(f"removed {await remove(client, args.name_prefix)} webhook(s)")
        return 0
    if not args.prefect_api_url:
        parser.error("--prefect-api-url (or PREFECT_API_URL) is needed")
    ids = await register(client, args.prefect_api_url, args.name_prefix)
    for name, webhook_id in zip(names(args.name_prefix), ids, strict=True):
        print(f"{name}: {webhook_id} -> {events_url(args.prefect_api_url)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
