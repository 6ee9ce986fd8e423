"""The portal as service delivery and a CRM use it: pages and JSON through FastAPI's TestClient,
the delivery flows for real (under a Prefect test harness) on a fresh embedded inventory."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from fastapi.testclient import TestClient

from allocation import architect
from allocation.backends.embedded import EmbeddedInventory
from allocation.model import PoolUsage
from allocation.settings import FactorySettings
from portal.app import create_app
from tests.support import DATA, small_pools_data

T = TypeVar("T")

DIA_0042 = {
    "service_identifier": "DIA-0042",
    "account_reference": "ACC-9",
    "site": "par01",
    "bandwidth": "1000",
    "ip_package": "medium",
}


@pytest.fixture(autouse=True)
def _on_the_session_harness(prefect_harness: None) -> None:
    """The flows run against the session's Prefect test server (tests/conftest.py)."""


def load(path: Path, data: Path = DATA) -> Path:
    inventory = EmbeddedInventory(path)
    inventory.load(data)
    asyncio.run(inventory.close())
    return path


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = load(tmp_path / "inventory.sqlite3")
    monkeypatch.setenv("FACTORY_BACKEND", "embedded")
    monkeypatch.setenv("FACTORY_DB", str(path))
    return path


@pytest.fixture
def client(db: Path) -> TestClient:
    return TestClient(create_app(FactorySettings()))


def read(db: Path, work: Callable[[EmbeddedInventory], Awaitable[T]]) -> T:
    async def main() -> T:
        inventory = EmbeddedInventory(db)
        try:
            return await work(inventory)
        finally:
            await inventory.close()

    return asyncio.run(main())


def pools(db: Path) -> list[PoolUsage]:
    return read(db, lambda inv: inv.pool_usage())


def approve(db: Path, identifier: str) -> None:
    """The architect merges the open proposed change (in Infrahub, in production)."""

    async def work(inventory: EmbeddedInventory) -> None:
        await architect.decide(identifier, "merge", inventory)

    read(db, work)


def text(html: str) -> str:
    """What a person reads: tags dropped, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def row_of(html: str, identifier: str) -> str:
    found = re.search(rf'<tr id="service-{identifier}">(.*?)</tr>', html, re.S)
    assert found, f"{identifier} is not in the list"
    return text(found.group(1))


def test_form_offers_the_four_sites_and_the_catalog(client: TestClient) -> None:
    page = client.get("/requests/new")
    assert page.status_code == 200
    select = re.search(r'<select id="site".*?</select>', page.text, re.S)
    assert select
    assert re.findall(r'<option value="([a-z0-9]+)"', select.group(0)) == ["ams01", "bru01", "lyn01", "par01"]
    words = text(page.text)
    for label in (
        "100M",
        "1G",
        "10G",
        "small: 6 IPs",
        "medium: 14 IPs",
        "large: 30 IPs",
        "Preview",
        "Request",
    ):
        assert label in words


def test_preview_shows_the_plan_and_reserves_nothing(client: TestClient, db: Path) -> None:
    before = pools(db)
    page = client.post("/requests/preview", data={**DIA_0042, "bandwidth": "10000"})
    assert page.status_code == 200
    plan = text(page.text.split('id="plan"', 1)[1])
    assert "Plan for DIA-0042 at par01 (nothing reserved)" in plan
    assert "a /28 prefix" in plan
    for resource in ("vlan allocate", "prefix allocate", "port allocate", "gateway allocate"):
        assert resource in plan
    assert "10000 Mbit/s" in plan
    assert 'value="DIA-0042"' in page.text  # the form keeps what was typed
    assert pools(db) == before
    assert client.get("/api/services").json() == []


def test_a_request_lands_in_the_list_in_delivery_then_active_with_its_handover(
    client: TestClient, db: Path
) -> None:
    sent = client.post("/requests", data=DIA_0042, follow_redirects=False)
    assert sent.status_code == 303
    assert sent.headers["location"].endswith("/?requested=DIA-0042")

    listing = client.get(sent.headers["location"])
    confirmation = text(listing.text.split('id="confirmation"', 1)[1].split("</div>", 1)[0])
    assert "DIA-0042 requested: in-delivery" in confirmation
    assert "on branch dia-0042-deliver is open" in confirmation
    row = row_of(listing.text, "DIA-0042")
    assert "ACC-9 par01 1G medium in-delivery dia-0042-deliver deliver: open" in row
    assert "allocated once active" in row

    detail = text(client.get("/services/DIA-0042").text)
    assert "Proposed change under review" in detail and "dia-0042-deliver" in detail
    assert "status on merge: **active**" in detail  # the change's description, as markdown text

    approve(db, "DIA-0042")
    row = row_of(client.get("/").text, "DIA-0042")
    assert re.search(r"active - 1\d{3} 203\.0\.113\.\d+/28 203\.0\.113\.\d+ \S+ \S+", row), row
    handover = text(client.get("/services/DIA-0042").text.split('id="handover"', 1)[1])
    assert "Handover: what to give the customer" in handover
    assert re.search(r"gateway 203\.0\.113\.\d+ customer addresses .* \(13\)", handover), handover


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"service_identifier": "dia 42"}, "service_identifier", "must look like DIA-0042"),
        ({"site": "zzz01"}, "site", "unknown site 'zzz01' (known sites: ams01, bru01, lyn01, par01)"),
        ({"site": "bru01", "bandwidth": "10000"}, "bandwidth", "no free customer port for 10G at bru01"),
        ({"account_reference": ""}, "account_reference", "give the customer account"),
    ],
    ids=["bad-identifier", "unknown-site", "10G-at-bru01", "no-account"],
)
def test_bad_input_gets_the_form_back_with_the_message_and_records_nothing(
    client: TestClient, db: Path, change: dict[str, str], field: str, message: str
) -> None:
    before = pools(db)
    page = client.post("/requests", data={**DIA_0042, **change}, follow_redirects=False)
    assert page.status_code == 422
    assert "The request was not recorded" in text(page.text)
    shown = re.search(rf'<p class="field-error" id="error-{field}">(.*?)</p>', page.text, re.S)
    assert shown and message in text(shown.group(1)).replace("&#39;", "'")
    assert 'value="ACC-9"' in page.text or field == "account_reference"  # what was typed is kept
    assert client.get("/api/services").json() == []
    assert pools(db) == before


def test_an_exhausted_pool_is_said_at_the_top_of_the_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Room for one /29 only: a medium package (/28) cannot be served.
    path = load(tmp_path / "small.sqlite3", small_pools_data(tmp_path / "data", prefix="203.0.113.0/29"))
    monkeypatch.setenv("FACTORY_DB", str(path))
    client = TestClient(create_app(FactorySettings()))
    page = client.post("/requests", data=DIA_0042)
    assert page.status_code == 422
    top = text(page.text.split('id="form-error"', 1)[1].split("</div>", 1)[0])
    assert "pool 'Customer prefixes pool' is exhausted: no /28 prefix left" in top.replace("&#39;", "'")
    assert client.get("/api/services").json() == []


def test_json_api_for_other_systems(client: TestClient) -> None:
    body = {**DIA_0042, "service_identifier": "DIA-0043", "site": "ams01"}
    created = client.post("/api/requests", json=body)
    assert created.status_code == 201, created.text
    result = created.json()
    assert result["outcome"] == "waiting" and result["status"] == "in-delivery"
    assert result["branch"] == "dia-0043-deliver" and result["proposed_change"]

    assert client.post("/api/requests", json=body).status_code == 200  # a retry changes nothing
    taken = client.post("/api/requests", json={**body, "account_reference": "ACC-OTHER"})
    assert taken.status_code == 409 and "DIA-0043 exists already" in taken.json()["detail"]

    invalid = client.post("/api/requests", json={**body, "service_identifier": "x", "bandwidth": "7"})
    assert invalid.status_code == 422
    assert {tuple(e["loc"]) for e in invalid.json()["detail"]} == {
        ("body", "service_identifier"),
        ("body", "bandwidth"),
    }
    no_port = client.post(
        "/api/requests",
        json={**body, "service_identifier": "DIA-0044", "site": "bru01", "bandwidth": "10000"},
    )
    assert no_port.status_code == 409 and "no free customer port for 10G at bru01" in no_port.json()["detail"]
    unknown = client.post("/api/requests", json={**body, "service_identifier": "DIA-0045", "site": "zzz01"})
    assert unknown.status_code == 400 and "unknown site 'zzz01'" in unknown.json()["detail"]

    services = client.get("/api/services").json()
    assert [(s["service_identifier"], s["status"]) for s in services] == [("DIA-0043", "in-delivery")]


def test_an_unknown_service_is_a_404_page(client: TestClient) -> None:
    page = client.get("/services/DIA-9999")
    assert page.status_code == 404 and "no service 'DIA-9999'" in text(page.text).replace("&#39;", "'")


def test_an_unreachable_source_of_truth_is_a_clear_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_BACKEND", "infrahub")
    monkeypatch.setenv("INFRAHUB_ADDRESS", "http://127.0.0.1:9")
    client = TestClient(create_app(FactorySettings()))
    page = client.get("/")
    assert page.status_code == 503
    assert "Source of truth unavailable" in page.text and "127.0.0.1:9" in page.text
    form = client.post("/requests", data=DIA_0042)
    assert form.status_code == 503
    api = client.get("/api/services")
    assert api.status_code == 503 and "cannot be reached" in api.json()["detail"]
