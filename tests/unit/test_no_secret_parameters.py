"""No flow takes a credential as a parameter: Prefect stores parameters in its database and shows
them on the flow-run page, so the flows reach Infrahub with a token from their environment
(INFRAHUB_API_TOKEN, the worker's) and a parameter must never carry one."""

from __future__ import annotations

import importlib
import re
from typing import Any

from prefect import Flow
from prefect.utilities.callables import parameter_schema
from pydantic import BaseModel

from deployments.catalog import catalog
from deployments.render import render

SECRET_NAME = re.compile(r"token|secret|passw|credential|api_?key|auth", re.IGNORECASE)


def field_names(schema: Any) -> set[str]:
    """Every property name anywhere in a JSON schema (nested models and definitions included)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                found |= set(value)
            found |= field_names(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= field_names(item)
    return found


def flow_of(entrypoint: str) -> Flow[Any, Any]:
    path, name = entrypoint.split(":")
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)
    assert isinstance(flow, Flow)
    return flow


def test_no_deployed_flow_has_a_parameter_named_like_a_credential() -> None:
    names: set[str] = set()
    for deployment in catalog():
        schema = parameter_schema(flow_of(deployment.entrypoint).fn).model_dump(by_alias=True)
        names |= field_names(schema)
        names |= field_names({"properties": dict(deployment.parameters)})
    assert "service_identifier" in names and "branch" in names  # the walk reaches nested models
    assert not {n for n in names if SECRET_NAME.search(n)}


class Connection(BaseModel):
    infrahub_api_token: str


async def leaky(service_identifier: str, connection: Connection) -> None: ...


def test_the_check_catches_a_token_in_a_nested_parameter_model() -> None:
    names = field_names(parameter_schema(leaky).model_dump(by_alias=True))
    assert {n for n in names if SECRET_NAME.search(n)} == {"infrahub_api_token"}


def test_the_rendered_deployments_carry_no_credential() -> None:
    rendered = render(catalog())
    assert not SECRET_NAME.search(rendered.replace("prefect.", "")), [
        line for line in rendered.splitlines() if SECRET_NAME.search(line)
    ]
