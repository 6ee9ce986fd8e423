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

Authenticated: with ``PREFECT_API_AUTH_STRING`` set (``scripts/prefect-stack/stack env``), both
webhooks send ``Authorization: Basic ...`` through a header node (``CoreKeyValue``) of their own:

- by default a ``CoreStaticKeyValue`` holding the header's value: Infrahub keeps it in its database,
  readable by accounts allowed to read key-value nodes; it works at once, whatever environment
  Infrahub's task workers were started with;
- with ``--auth-from-env VAR``, a ``CoreEnvKeyValue`` naming VAR: Infrahub's task workers read the
  value from their own environment at send time (a delivery fails while VAR is unset there), so
  the credential is not in Infrahub's database. Set VAR, in those workers' environment, to
  ``Basic <base64 of the auth string>``.

Each webhook also gets a shared key (``FACTORY_WEBHOOK_SHARED_KEY``, else a random one): Infrahub
then signs every request (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``, the Standard
Webhooks scheme). Prefect's open-source server does not check that signature; the Authorization
header is what it checks.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
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
                $transform: String!, $headers: [RelatedNodeInput], $key: String) {
  CoreCustomWebhookUpsert(data: {
    name: {value: $name}, event_type: {value: $event}, node_kind: {value: $kind},
    branch_scope: {value: "all_branches"}, url: {value: $url}, active: {value: true},
    description: {value: $description}, transformation: {id: $transform}, headers: $headers,
    shared_key: {value: $key}
  }) { ok object { id } }
}
"""

FIND_HEADER = """
query FindHeader($name: String!) { CoreKeyValue(name__value: $name) { edges { node { id __typename } } } }
"""

UPSERT_HEADER = """
mutation UpsertHeader($name: String!, $key: String!, $value: String!, $description: String!) {
  %s(data: {name: {value: $name}, key: {value: $key}, value: {value: $value},
            description: {value: $description}}) { ok object { id } }
}
"""

DELETE_HEADER = "mutation DeleteHeader($id: String!) { %s(data: {id: $id}) { ok } }"


FIND = """
query Find($names: [String]) { CoreCustomWebhook(name__values: $names) { edges { node { id } } } }
"""

DELETE = "mutation Delete($id: String!) { CoreCustomWebhookDelete(data: {id: $id}) { ok } }"


def names(prefix: str = PREFIX) -> list[str]:
    return [f"{prefix}: {w.suffix}" for w in WEBHOOKS]


def events_url(prefect_api_url: str) -> str:
    return prefect_api_url.rstrip("/") + "/events"


def header_name(prefix: str = PREFIX) -> str:
    return f"{prefix}: prefect authorization"


def basic_authorization(auth_string: str) -> str:
    """The Authorization header's value Prefect's server checks (PREFECT_SERVER_API_AUTH_STRING)."""
    return "Basic " + base64.b64encode(auth_string.encode()).decode()


async def _delete_header(client: InfrahubClient, prefix: str) -> int:
    found = await client.execute_graphql(query=FIND_HEADER, variables={"name": header_name(prefix)})
    for edge in found["CoreKeyValue"]["edges"]:
        mutation = DELETE_HEADER % f"{edge['node']['__typename']}Delete"
        await client.execute_graphql(query=mutation, variables={"id": edge["node"]["id"]})
    return len(found["CoreKeyValue"]["edges"])


async def _upsert_header(
    client: InfrahubClient, prefix: str, auth_string: str | None, from_env: str | None
) -> str:
    """The Authorization header node both webhooks send; its id."""
    kind = "CoreEnvKeyValue" if from_env else "CoreStaticKeyValue"
    found = await client.execute_graphql(query=FIND_HEADER, variables={"name": header_name(prefix)})
    if any(e["node"]["__typename"] != kind for e in found["CoreKeyValue"]["edges"]):
        await _delete_header(client, prefix)  # switching static <-> environment: one name, one node
    if from_env:
        value, description = from_env, "Prefect API credential, from the task workers' environment"
    else:
        assert auth_string is not None
        value, description = basic_authorization(auth_string), "Prefect API credential"
    result = await client.execute_graphql(
        query=UPSERT_HEADER % f"{kind}Upsert",
        variables={
            "name": header_name(prefix),
            "key": "Authorization",
            "value": value,
            "description": description,
        },
    )
    return str(result[f"{kind}Upsert"]["object"]["id"])


async def register(
    client: InfrahubClient,
    prefect_api_url: str,
    prefix: str = PREFIX,
    *,
    auth_string: str | None = None,
    auth_from_env: str | None = None,
    shared_key: str | None = None,
) -> list[str]:
    """Create or update the webhooks; their ids. With ``auth_string`` (or ``auth_from_env``, the
    name of a variable of Infrahub's task workers) they send Prefect's credential; they are signed
    with ``shared_key`` (a random one when None)."""
    found = await client.execute_graphql(query=TRANSFORM_QUERY, variables={"name": TRANSFORM})
    edges = found["CoreTransformPython"]["edges"]
    if not edges:
        raise LookupError(
            f"no transform {TRANSFORM!r} in Infrahub: register this repository first (.infrahub.yml)"
        )
    headers = []
    if auth_string or auth_from_env:
        headers = [{"id": await _upsert_header(client, prefix, auth_string, auth_from_env)}]
    else:
        await _delete_header(client, prefix)
    key = shared_key or secrets.token_urlsafe(32)
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
                "headers": headers,
                "key": key,
            },
        )
        ids.append(str(result["CoreCustomWebhookUpsert"]["object"]["id"]))
    return ids


async def remove(client: InfrahubClient, prefix: str = PREFIX) -> int:
    """Delete the webhooks; how many there were."""
    found = await client.execute_graphql(query=FIND, variables={"names": names(prefix)})
    for edge in found["CoreCustomWebhook"]["edges"]:
        await client.execute_graphql(query=DELETE, variables={"id": edge["node"]["id"]})
    await _delete_header(client, prefix)
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
    parser.add_argument(
        "--auth-from-env",
        metavar="VAR",
        help="Infrahub's task workers send the Authorization header from their variable VAR "
        "(default: the header's value from PREFECT_API_AUTH_STRING, kept in Infrahub)",
    )
    args = parser.parse_args(argv)
    client = client_from_settings()
    if args.remove:
        print(f"removed {await remove(client, args.name_prefix)} webhook(s)")
        return 0
    if not args.prefect_api_url:
        parser.error("--prefect-api-url (or PREFECT_API_URL) is needed")
    auth = os.environ.get("PREFECT_API_AUTH_STRING") or None
    ids = await register(
        client,
        args.prefect_api_url,
        args.name_prefix,
        auth_string=auth,
        auth_from_env=args.auth_from_env,
        shared_key=os.environ.get("FACTORY_WEBHOOK_SHARED_KEY") or None,
    )
    sent = (
        f"Authorization from ${args.auth_from_env}"
        if args.auth_from_env
        else ("Authorization" if auth else "no Authorization (PREFECT_API_AUTH_STRING unset)")
    )
    for name, webhook_id in zip(names(args.name_prefix), ids, strict=True):
        print(f"{name}: {webhook_id} -> {events_url(args.prefect_api_url)} ({sent}, signed)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
