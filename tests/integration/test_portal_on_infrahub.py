"""The portal on a live Infrahub, as its people use it: everyone signs in with Infrahub's own
accounts (data/07_accounts.yml, loaded by scripts/infrahub-bootstrap) and every call reaches
Infrahub with that person's token, so Infrahub's permissions decide and Infrahub records who did
what. Service delivery requests and later decommissions; the architect merges both changes (two
merges, 30-75 s each); the read-only account only sees."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from allocation.backends.infrahub import InfrahubInventory
from allocation.errors import PermissionDenied
from allocation.intent import ServiceStatus
from allocation.model import MAIN
from allocation.settings import FactorySettings, InfrahubSettings
from portal.app import create_app
from tests.integration.conftest import requires_infrahub, sdk_query
from tests.portal_support import Portal, table_rows

pytestmark = [pytest.mark.integration, requires_infrahub]

DELIVERY, ARCHITECT, VIEWER = "otter-delivery", "otter-architect", "otter-viewer"
CREATED_BY = """
query CreatedBy($identifier: String!) {
  ServiceDedicatedInternet(service_identifier__value: $identifier) {
    edges { node_metadata { created_by { ... on CoreGenericAccount { name { value } } } } }
  }
}
"""


@pytest.fixture
def people(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Portal]]:
    monkeypatch.setenv("FACTORY_BACKEND", "infrahub")
    monkeypatch.setenv("PORTAL_SECRET_KEY", "integration")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    app = create_app(FactorySettings(backend="infrahub"))
    opened: list[Portal] = []

    def sign_in(name: str) -> Portal:
        browser = Portal(app, base_url="https://testserver")
        answer = browser.post("/api/session", json={"username": name, "password": f"{name}-demo"})
        assert answer.status_code == 200, answer.text
        opened.append(browser)
        return browser

    yield sign_in
    for browser in opened:
        browser.delete("/api/session")  # invalidates the refresh token in Infrahub
        browser.close()


def _in_thread(work: Any) -> Any:
    # TestClient runs the app's loop in this thread's portal: run our own coroutines elsewhere.
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, work).result()


async def _as(token: str, action: Callable[[InfrahubInventory], Any]) -> Any:
    inventory = InfrahubInventory.from_settings(InfrahubSettings(), access_token=token)
    try:
        return await action(inventory)
    finally:
        await inventory.close()


def test_requested_by_delivery_approved_by_the_architect_refused_to_the_others(
    people: Callable[[str], Portal], new_id: Callable[[], str]
) -> None:
    identifier = new_id()
    delivery, architect, viewer = people(DELIVERY), people(ARCHITECT), people(VIEWER)
    assert set(delivery.get("/api/session").json()["capabilities"]) == {"view", "request", "change"}
    assert set(architect.get("/api/session").json()["capabilities"]) == {"view", "approve"}
    assert viewer.get("/api/session").json()["capabilities"] == ["view"]

    body = {
        "service_identifier": identifier,
        "account_reference": "ACC-IT",
        "site": "ams01",
        "bandwidth": "1000",
        "ip_package": "small",
    }
    assert viewer.post("/api/requests", json=body).status_code == 403
    requested = delivery.post("/api/requests", json=body)
    assert requested.status_code == 201, requested.text
    assert requested.json()["outcome"] == "waiting"
    try:
        assert delivery.post(f"/api/services/{identifier}/approve", json={}).status_code == 403
        # Not only the portal: Infrahub itself refuses these accounts with their own tokens.
        change = requested.json()["proposed_change"]
        with pytest.raises(PermissionDenied, match="Infrahub refused"):
            _in_thread(_as(_token(delivery), lambda inv: inv.merge_proposed_change(change)))
        with pytest.raises(PermissionDenied):
            _in_thread(
                _as(
                    _token(viewer),
                    lambda inv: inv.update_service(identifier, MAIN, status=ServiceStatus.DRAFT),
                )
            )

        approved = architect.post(f"/api/services/{identifier}/approve", json={})
        assert approved.status_code == 200, approved.text
        assert approved.json()["outcome"] == "done" and approved.json()["status"] == "active"

        assert viewer.get(f"/api/services/{identifier}").json()["requested_by"] == DELIVERY
        page = viewer.get(f"/services/{identifier}").text
        assert table_rows(page, "decisions")["deliver"][2:] == ["merged", ARCHITECT]  # Infrahub's record
        assert 'id="decide"' not in page and 'id="modify-form"' not in page  # the viewer only sees
        created = _in_thread(sdk_query(CREATED_BY, {"identifier": identifier}))
        edge = created["ServiceDedicatedInternet"]["edges"][0]
        assert edge["node_metadata"]["created_by"]["name"]["value"] == DELIVERY
    finally:
        _give_back(identifier, delivery, architect)


def _token(browser: Portal) -> str:
    """The person's Infrahub token, as the portal holds it in their session (tests only)."""
    from portal.auth import COOKIE, SessionCodec

    session = SessionCodec("integration").open(browser.cookies.get(COOKIE))
    assert session is not None and session.identity is not None and session.identity.access_token
    return session.identity.access_token


def _give_back(identifier: str, delivery: Portal, architect: Portal) -> None:
    """Leave the shared Infrahub as found: decommission what was delivered, or close the change."""
    service = delivery.get(f"/api/services/{identifier}").json()
    if service.get("status") == "active":
        assert delivery.post(f"/api/services/{identifier}/decommission", json={}).status_code == 200
        decided = architect.post(f"/api/services/{identifier}/approve", json={})
        assert decided.status_code == 200 and decided.json()["status"] == "decommissioned", decided.text
        page = delivery.get(f"/services/{identifier}").text
        assert table_rows(page, "decisions")["decommission"][2:] == ["merged", ARCHITECT]
    elif service.get("status") == "in-delivery":
        architect.post(f"/api/services/{identifier}/reject", json={})
