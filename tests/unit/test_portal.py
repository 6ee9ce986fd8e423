"""The portal as service delivery and a CRM use it: pages and JSON through FastAPI's TestClient,
the transitions for real (the plain runner, as without PREFECT_API_URL) on a fresh embedded inventory."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import html
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from allocation import architect
from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import ServiceStatus
from allocation.settings import FactorySettings
from portal.app import Security, create_app
from tests import lifecycle
from tests.portal_support import DIA_0042, Portal, approve, load, pools, read, table_rows, text
from tests.support import ROOT, request, small_pools_data


def row_of(html: str, identifier: str) -> str:
    found = re.search(rf'<tr id="service-{identifier}">(.*?)</tr>', html, re.S)
    assert found, f"{identifier} is not in the list"
    return text(found.group(1))


def test_form_offers_the_four_sites_and_the_catalog(client: Portal) -> None:
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


def test_preview_shows_the_plan_and_reserves_nothing(client: Portal, db: Path) -> None:
    before = pools(db)
    page = client.submit("/requests/preview", {**DIA_0042, "bandwidth": "10000"})
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
    client: Portal, db: Path
) -> None:
    sent = client.submit("/requests", DIA_0042, follow_redirects=False)
    assert sent.status_code == 303
    assert sent.headers["location"].endswith("/?requested=DIA-0042")

    listing = client.get(sent.headers["location"])
    confirmation = text(listing.text.split('id="confirmation"', 1)[1].split("</div>", 1)[0])
    assert "DIA-0042 requested: in-delivery" in confirmation
    assert "on branch dia-0042-deliver is open" in confirmation
    row = row_of(listing.text, "DIA-0042")
    assert "ACC-9 par01 1G medium in-delivery dia-0042-deliver deliver: open" in row
    assert "allocated once active" in row

    page = client.get("/services/DIA-0042").text
    assert "Proposed change under review" in text(page) and "dia-0042-deliver" in text(page)
    plan = table_rows(page, "plan")
    assert plan["status"] == ["in-delivery", "active"]  # now on main, once merged
    assert plan["VLAN"][0] == "-" and re.fullmatch(r"1\d{3} \(default\)", plan["VLAN"][1])
    assert plan["prefix"][0] == "-" and re.fullmatch(r"203\.0\.113\.\d+/28", plan["prefix"][1])
    assert "**" not in page  # no markdown shown as text

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
    client: Portal, db: Path, change: dict[str, str], field: str, message: str
) -> None:
    before = pools(db)
    page = client.submit("/requests", {**DIA_0042, **change}, follow_redirects=False)
    assert page.status_code == 422
    assert "The request was not recorded" in text(page.text)
    shown = re.search(rf'<p class="field-error" id="error-{field}">(.*?)</p>', page.text, re.S)
    assert shown and message in text(shown.group(1)).replace("&#39;", "'")
    assert 'value="ACC-9"' in page.text or field == "account_reference"  # what was typed is kept
    assert client.get("/api/services").json() == []
    assert pools(db) == before


def test_an_exhausted_pool_is_said_at_the_top_of_the_form(
    portal: Callable[[], Portal], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Room for one /29 only: a medium package (/28) cannot be served.
    path = load(tmp_path / "small.sqlite3", small_pools_data(tmp_path / "data", prefix="203.0.113.0/29"))
    monkeypatch.setenv("FACTORY_DB", str(path))
    client = portal().sign_in("dora")
    page = client.submit("/requests", DIA_0042)
    assert page.status_code == 422
    top = text(page.text.split('id="form-error"', 1)[1].split("</div>", 1)[0])
    assert "pool 'Customer prefixes pool' is exhausted: no /28 prefix left" in top.replace("&#39;", "'")
    assert client.get("/api/services").json() == []


def test_json_api_for_other_systems(client: Portal) -> None:
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


def test_an_unknown_service_is_a_404_page(client: Portal) -> None:
    page = client.get("/services/DIA-9999")
    assert page.status_code == 404 and "no service 'DIA-9999'" in text(page.text).replace("&#39;", "'")


def test_an_unreachable_source_of_truth_is_a_clear_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_BACKEND", "infrahub")
    monkeypatch.setenv("INFRAHUB_ADDRESS", "http://127.0.0.1:9")
    # Nobody to sign in as without Infrahub: the local operator's mode, where the inventory opens at once.
    client = Portal(
        create_app(FactorySettings(), Security(authenticator=None)), base_url="https://testserver"
    )
    page = client.get("/")
    assert page.status_code == 503
    assert "Source of truth unavailable" in page.text and "127.0.0.1:9" in page.text
    form = client.submit("/requests", DIA_0042)
    assert form.status_code == 503
    api = client.get("/api/services")
    assert api.status_code == 503 and "cannot be reached" in api.json()["detail"]


def deliver_active(client: Portal, db: Path, body: dict[str, str] = DIA_0042) -> str:
    """A service requested through the portal and merged by the architect: active."""
    assert client.submit("/requests", body, follow_redirects=False).status_code == 303
    approve(db, body["service_identifier"])
    return body["service_identifier"]


def test_an_active_service_is_changed_from_its_page_through_a_reviewed_change(
    client: Portal, db: Path
) -> None:
    identifier = deliver_active(client, db)
    page = client.get(f"/services/{identifier}").text
    holds = table_rows(page, "plan")
    assert holds["bandwidth"] == ["1000 Mbit/s"] and holds["IP package"] == ["medium"]
    assert 'id="modify-form"' in page and 'id="decommission-form"' in page

    asked = client.submit(
        f"/services/{identifier}/modify",
        {"bandwidth": "10000", "ip_package": "large"},
        follow_redirects=False,
    )
    assert asked.status_code == 303 and asked.headers["location"].endswith(
        f"/services/{identifier}?asked=modify"
    )
    page = client.get(asked.headers["location"]).text
    assert "modify of DIA-0042 requested" in text(page) and "dia-0042-modify" in text(page)
    plan = table_rows(page, "plan")
    assert plan["bandwidth"] == ["1000 Mbit/s", "10000 Mbit/s"]
    assert plan["IP package"] == ["medium", "large"]
    assert re.fullmatch(r"203\.0\.113\.\d+/27", plan["prefix"][1]) and plan["prefix"][0] != plan["prefix"][1]
    assert "(10000 Mbit/s)" in plan["port"][1]  # moved to a 10G port
    assert 'id="modify-form"' not in page  # under review: no second change on top

    approve(db, identifier)
    holds = table_rows(client.get(f"/services/{identifier}").text, "plan")
    assert holds["status"] == ["active"] and holds["bandwidth"] == ["10000 Mbit/s"]


def configuration_of(page: str) -> dict[str, list[str]]:
    """device -> its configuration blocks on the service page (now, then once merged when under review)."""
    section = page.split('id="configuration"', 1)[1].split("</section>", 1)[0]
    found: dict[str, list[str]] = {}
    for device, body in re.findall(r"<h3>(.*?)</h3>(.*?)(?=<h3>|$)", section, re.S):
        found[device] = [html.unescape(b) for b in re.findall(r"<pre[^>]*>(.*?)</pre>", body, re.S)]
    return found


def test_the_service_page_shows_the_device_configuration_and_what_a_change_makes_of_it(
    client: Portal, db: Path
) -> None:
    identifier = deliver_active(client, db)
    service = read(db, lambda inventory: lifecycle.get_service(identifier, inventory))
    port, gateway = service.implementation.port, service.implementation.gateway
    assert port is not None and gateway is not None
    shown = configuration_of(client.get(f"/services/{identifier}").text)
    assert set(shown) == {port.port.device, gateway.device}
    (switch,) = shown[port.port.device]
    assert f"interface {port.port.name}\n   description {identifier} | ACC-9 | 1000 Mbit/s\n" in switch
    assert f"   switchport access vlan {port.vlan_id}\n" in switch
    (router,) = shown[gateway.device]
    assert f"interface {gateway.interface}\n" in router and f"   ip address {gateway.address}\n" in router

    client.submit(f"/services/{identifier}/modify", {"ip_package": "large"})
    branch = f"{identifier.lower()}-modify"
    proposed = read(db, lambda inventory: lifecycle.get_service(identifier, inventory, branch))
    larger = proposed.implementation.gateway
    assert larger is not None and larger.address != gateway.address
    now, then = configuration_of(client.get(f"/services/{identifier}").text)[larger.device]
    assert f"   ip address {gateway.address}\n" in now and f"   ip address {larger.address}\n" in then
    assert f"   ip address {gateway.address}\n" not in then


def test_a_change_the_core_refuses_comes_back_on_the_page_and_changes_nothing(
    client: Portal, db: Path
) -> None:
    identifier = deliver_active(client, db, {**DIA_0042, "site": "bru01"})
    before = pools(db)
    wrong = client.submit(f"/services/{identifier}/modify", {"bandwidth": "7", "ip_package": "large"})
    assert wrong.status_code == 422 and "choose 100 (100M), 1000 (1G) or 10000 (10G)" in text(wrong.text)
    no_port = client.submit(f"/services/{identifier}/modify", {"bandwidth": "10000"})
    assert no_port.status_code == 422
    assert "no free customer port for 10G at bru01" in text(no_port.text)
    same = client.submit(f"/services/{identifier}/modify", {"bandwidth": "1000", "ip_package": "medium"})
    assert same.status_code == 200 and "already active: nothing to modify" in text(same.text)
    assert pools(db) == before
    assert table_rows(client.get(f"/services/{identifier}").text, "plan")["status"] == ["active"]

    other = {**DIA_0042, "service_identifier": "DIA-0050"}
    assert client.submit("/requests", other, follow_redirects=False).status_code == 303
    in_delivery = client.submit("/services/DIA-0050/decommission", {})
    assert in_delivery.status_code == 422
    assert "DIA-0050 is in-delivery: decommission needs it active" in text(in_delivery.text)
    assert client.submit("/services/DIA-9999/decommission", {}).status_code == 404


def test_decommission_from_the_page_gives_everything_back_once_merged(client: Portal, db: Path) -> None:
    before = pools(db)
    identifier = deliver_active(client, db)
    asked = client.submit(f"/services/{identifier}/decommission", {"confirm": "yes"}, follow_redirects=False)
    assert asked.status_code == 303
    plan = table_rows(client.get(asked.headers["location"]).text, "plan")
    assert plan["status"] == ["in-decommissioning", "decommissioned"]
    assert plan["VLAN"][1] == "-" and plan["port"][1] == "-" and plan["VLAN"][0] != "-"
    approve_decision = read(db, lambda inv: architect.decide(identifier, "merge", inv))
    assert approve_decision.outcome.value == "done"
    assert pools(db) == before


def test_capacity_shows_ports_per_switch_and_pools_as_bars(client: Portal, db: Path) -> None:
    deliver_active(client, db)  # par01, 1G: one port of sw01-par01
    page = client.get("/capacity")
    assert page.status_code == 200
    switch = text(re.search(r'<tr id="switch-sw01-par01">(.*?)</tr>', page.text, re.S).group(1))  # type: ignore[union-attr]
    assert "5 of 6" in switch and "3 x 1G, 2 x 10G" in switch
    assert 'aria-label="sw01-par01: 1 of 6 ports used"' in page.text
    assert 'aria-label="sw02-par01: 0 of 6 ports used"' in page.text
    prefix_bar = re.search(
        r'aria-label="Customer prefixes pool: ([\d.]+)% used".*?class="bar-fill[^"]*"[^>]*width="([\d.]+)"',
        page.text,
        re.S,
    )
    assert (
        prefix_bar and prefix_bar.group(1) == "6.2" and float(prefix_bar.group(2)) == 6.25
    )  # a /28 of a /24
    assert "<script" not in page.text and "http" not in page.text.split("<body>", 1)[1].replace(
        "https://testserver", ""
    )


def seed(db: Path, count: int) -> None:
    """``count`` drafts spread over two sites, every third one in delivery: no flow needed to list them."""

    async def work(inventory: EmbeddedInventory) -> None:
        for n in range(count):
            site = "par01" if n % 2 else "lyn01"
            await inventory.create_service(request(f"DIA-{n:04d}", site=site))
            if n % 3 == 0:
                await inventory.update_service(f"DIA-{n:04d}", "main", status=ServiceStatus.IN_DELIVERY)

    read(db, work)


def listed(html: str) -> list[str]:
    return re.findall(r'<tr id="service-([A-Z0-9-]+)">', html)


def test_the_list_comes_a_page_at_a_time_filtered_by_status_and_site(client: Portal, db: Path) -> None:
    seed(db, 45)
    first = client.get("/")
    assert listed(first.text) == [f"DIA-{n:04d}" for n in range(20)]
    assert "1 to 20 of 45 services, page 1 of 3" in text(first.text)
    third = client.get("/?page=3")
    assert listed(third.text) == [f"DIA-{n:04d}" for n in range(40, 45)]
    assert 'href="https://testserver/?page=2" rel="prev"' in third.text
    assert listed(client.get("/?page=99").text) == listed(third.text)  # past the end: the last page

    filtered = client.get("/?status=in-delivery&site=lyn01")
    expected = [f"DIA-{n:04d}" for n in range(45) if n % 3 == 0 and n % 2 == 0]
    assert listed(filtered.text) == expected
    assert f"1 to {len(expected)} of {len(expected)} services" in text(filtered.text)
    assert '<option value="in-delivery" selected>' in filtered.text
    two_per_page = client.get("/?status=draft&site=par01")
    assert all(int(i[4:]) % 2 == 1 and int(i[4:]) % 3 != 0 for i in listed(two_per_page.text))
    assert (
        'href="https://testserver/?status=draft&amp;site=par01&amp;page=2"' not in two_per_page.text
    )  # 15 fit

    assert client.get("/?status=&site=").status_code == 200  # the form's "any"
    unknown = client.get("/?status=lost")
    assert unknown.status_code == 400 and "unknown status 'lost'" in text(unknown.text).replace("&#39;", "'")
    assert client.get("/?page=0").status_code == 422

    api = client.get("/api/services", params={"status": "in-delivery", "limit": 5, "offset": 5})
    assert api.headers["X-Total-Count"] == "15"
    assert [s["service_identifier"] for s in api.json()] == [f"DIA-{n:04d}" for n in range(15, 30, 3)]


def test_the_api_refuses_a_live_service_asked_for_with_other_values_as_the_cli_does(
    client: Portal, db: Path
) -> None:
    identifier = deliver_active(client, db)
    same = client.post("/api/requests", json=DIA_0042)
    assert same.status_code == 200 and same.json()["status"] == "active"
    other = client.post("/api/requests", json={**DIA_0042, "bandwidth": "10000", "ip_package": "large"})
    assert other.status_code == 409
    assert other.json()["detail"] == (
        "DIA-0042 is active (account ACC-9 at par01, 1000 Mbit/s, medium): a live service is changed "
        "with `factory modify DIA-0042 --bandwidth ... --package ...`"
    )
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "factory_cli.main",
            "request",
            identifier,
            "--account",
            "ACC-9",
            "--site",
            "par01",
            "--bandwidth",
            "10000",
            "--package",
            "large",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "FACTORY_DB": str(db), "FACTORY_BACKEND": "embedded"},
    )
    assert cli.returncode == 2 and cli.stderr == f"error: {other.json()['detail']}\n"

    modified = client.post(f"/api/services/{identifier}/modify", json={"bandwidth": "10000"})
    assert modified.status_code == 200 and modified.json()["outcome"] == "waiting"
    assert modified.json()["branch"] == "dia-0042-modify"
    assert client.post(f"/api/services/{identifier}/modify", json={"colour": "red"}).status_code == 422
    assert client.post("/api/services/DIA-9999/decommission", json={}).status_code == 404
    busy = client.post(f"/api/services/{identifier}/decommission", json={})
    assert busy.status_code == 409 and "in-delivery" in busy.json()["detail"]
