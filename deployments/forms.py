"""What the Prefect UI's run forms offer and what the server accepts, decided when deploying.

Prefect derives a deployment's form from the flow's signature. Two things only the deployment
knows are set here: the sites a request may name (read from the inventory, so the form offers a
choice and the server refuses an unknown site at once, before any run), and that ``local_wait``
(how long a run *without* a deployment polls for the architect) is not part of a deployed run.
Each deployment also enforces its schema, so a bad parameter is refused by the API call itself.

    prefect deploy --all && python -m deployments.forms      # after every deploy
"""

from __future__ import annotations

import asyncio
import copy
import sys
from typing import Any

from deployments.catalog import catalog

LOCAL_ONLY = ("local_wait",)


def form_schema(schema: dict[str, Any], sites: list[str]) -> dict[str, Any]:
    """The flow's parameter schema as a deployment's form: local-only parameters out, sites as choices."""
    form = copy.deepcopy(schema)
    for name in LOCAL_ONLY:
        form.get("properties", {}).pop(name, None)
        if name in form.get("required", []):
            form["required"].remove(name)
    site = form.get("definitions", {}).get("ServiceRequest", {}).get("properties", {}).get("site")
    if site is not None and sites:
        site["enum"] = sorted(sites)
        site["description"] = "One of the inventory's sites (the list is read when the deployments are made)"
    return form


async def known_sites() -> list[str]:
    from allocation.settings import open_inventory

    inventory = open_inventory()
    try:
        return await inventory.list_sites()
    finally:
        await inventory.close()


async def refresh(sites: list[str] | None = None) -> list[str]:
    """Set the form and schema enforcement of every deployment of the catalog on the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    from deployments.serve import flow_of

    sites = sites if sites is not None else await known_sites()
    done: list[str] = []
    async with get_client() as client:
        for deployment in catalog():
            flow = flow_of(deployment)
            found = await client.read_deployment_by_name(f"{flow.name}/{deployment.name}")
            schema = form_schema(flow.parameters.model_dump(), sites)
            await client.update_deployment(
                found.id,
                DeploymentUpdate(parameter_openapi_schema=schema, enforce_parameter_schema=True),
            )
            done.append(f"{flow.name}/{deployment.name}")
    return done


def main() -> int:
    sites = asyncio.run(known_sites())
    if not sites:
        # Without sites the form cannot offer a choice, and a request for any site would be accepted
        # by the server and fail inside its run: refuse, as the form would.
        print(
            "error: the inventory knows no sites, so the request form cannot list them: load it first "
            "(factory load, or scripts/infrahub-bootstrap with FACTORY_BACKEND=infrahub), then run this again",
            file=sys.stderr,
        )
        return 2
    updated = asyncio.run(refresh(sites))
    print(f"forms set on {len(updated)} deployments: {', '.join(updated)}; sites: {', '.join(sorted(sites))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
