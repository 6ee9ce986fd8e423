"""The stack's Prefect API asks for its credential: refused without it or with a wrong one, served
with it; the CLI pointed at it with a wrong credential says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from deployments.webhooks import basic_authorization
from tests.deployed.conftest import PrefectApi, requires_stack
from tests.support import ROOT

pytestmark = [pytest.mark.deployed, requires_stack]


async def test_the_api_refuses_a_request_without_the_credential_and_serves_one_with_it(
    prefect_api: PrefectApi,
) -> None:
    wrong = basic_authorization(prefect_api.auth + "x")
    async with httpx.AsyncClient(base_url=prefect_api.url, timeout=30) as http:
        for headers in ({}, {"Authorization": wrong}, {"Authorization": "Bearer " + prefect_api.auth}):
            for method, path, body in (
                ("POST", "/flow_runs/filter", {"limit": 1}),
                ("POST", "/events", []),  # where Infrahub's webhook posts
                ("POST", "/deployments/filter", {"limit": 1}),
            ):
                refused = await http.request(method, path, json=body, headers=headers)
                assert refused.status_code == 401, (path, headers.keys(), refused.text)
        assert (await http.get("/health")).status_code == 200  # the probe stays open, and says only "true"
        allowed = {"Authorization": basic_authorization(prefect_api.auth)}
        assert (await http.post("/flow_runs/filter", json={"limit": 1}, headers=allowed)).status_code == 200
        assert (await http.post("/events", json=[], headers=allowed)).status_code == 204


def test_the_cli_with_a_wrong_credential_refuses_in_one_line(prefect_api: PrefectApi, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FACTORY_"))}
    env.update(
        prefect_api.env(),
        PREFECT_API_AUTH_STRING=prefect_api.auth + "x",
        FACTORY_BACKEND="embedded",
        FACTORY_DB=str(tmp_path / "inventory.sqlite3"),
    )
    result = subprocess.run(
        [sys.executable, "-m", "factory_cli.main", "decommission", "DIA-0001"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 3, result.stdout + result.stderr
    assert len(lines) == 1 and "refused the credential (401)" in lines[0], lines
    assert prefect_api.auth not in result.stdout + result.stderr
