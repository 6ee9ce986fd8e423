"""Who may do what in the portal, and bad input at every door (embedded backend, local accounts).

Every route of the app is listed from the app itself, so a route added later without a rule here
fails these tests instead of going unchecked."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from allocation.settings import FactorySettings
from portal import accounts
from portal.__main__ import main as portal_main
from portal.app import NoAccounts, Security, create_app
from portal.auth import COOKIE, Capability, InfrahubAccounts
from tests.portal_support import DIA_0042, PASSWORD, Portal, pools, table_rows, text
from tests.support import ROOT

PUBLIC = {
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("POST", "/api/session"),
    ("DELETE", "/api/session"),
}
# What each route needs; the tests below fail for a route missing here.
NEEDS = {
    ("GET", "/"): Capability.VIEW,
    ("GET", "/capacity"): Capability.VIEW,
    ("GET", "/services/{identifier}"): Capability.VIEW,
    ("GET", "/api/services"): Capability.VIEW,
    ("GET", "/api/services/{identifier}"): Capability.VIEW,
    ("GET", "/api/session"): Capability.VIEW,
    ("GET", "/requests/new"): Capability.REQUEST,
    ("POST", "/requests/preview"): Capability.REQUEST,
    ("POST", "/requests"): Capability.REQUEST,
    ("POST", "/api/requests"): Capability.REQUEST,
    ("POST", "/services/{identifier}/modify"): Capability.CHANGE,
    ("POST", "/services/{identifier}/decommission"): Capability.CHANGE,
    ("POST", "/api/services/{identifier}/modify"): Capability.CHANGE,
    ("POST", "/api/services/{identifier}/decommission"): Capability.CHANGE,
    ("POST", "/services/{identifier}/approve"): Capability.APPROVE,
    ("POST", "/services/{identifier}/reject"): Capability.APPROVE,
    ("POST", "/api/services/{identifier}/approve"): Capability.APPROVE,
    ("POST", "/api/services/{identifier}/reject"): Capability.APPROVE,
}
ROLE_OF = {"dora": "delivery", "archie": "architect", "vera": "viewer"}
MAY = {
    "dora": {Capability.VIEW, Capability.REQUEST, Capability.CHANGE},
    "archie": {Capability.VIEW, Capability.APPROVE},
    "vera": {Capability.VIEW},
}


def routes() -> list[tuple[str, str]]:
    """Every route of the app, pages included, from its OpenAPI description."""
    app = create_app(FactorySettings(backend="embedded"), Security(authenticator=None))
    return [(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item]


def send(client: Portal, method: str, path: str, *, form: bool = True) -> int:
    """One request as a browser or a CRM would send it, with the session's CSRF token."""
    url = path.replace("{identifier}", "DIA-0042")
    if method == "GET":
        return client.get(url, follow_redirects=False).status_code
    if url.startswith("/api/"):
        return client.request(method, url, json={}, follow_redirects=False).status_code
    return client.post(url, data={"csrf_token": client.csrf()}, follow_redirects=False).status_code


def test_every_route_has_a_rule() -> None:
    listed = set(routes())
    assert listed - PUBLIC - set(NEEDS) == set(), "a route nobody decided who may use"
    assert set(NEEDS) | PUBLIC <= listed


def test_nothing_but_signing_in_answers_without_a_session(portal: Callable[[], Portal]) -> None:
    anonymous = portal()
    for method, path in NEEDS:
        code = send(anonymous, method, path)
        if path.startswith("/api/"):
            assert code == 401, (method, path, code)
        else:
            assert code == 303, (method, path, code)  # to the sign-in page
    page = anonymous.get("/services/DIA-0042", follow_redirects=False)
    assert page.headers["location"].endswith("/login?next=%2Fservices%2FDIA-0042")
    assert anonymous.get("/api/services").json() == {"detail": "sign in first: POST /api/session"}


@pytest.mark.parametrize("name", sorted(MAY))
def test_each_role_is_refused_what_it_may_not_do(portal: Callable[[], Portal], db: Path, name: str) -> None:
    before = pools(db)
    person = portal().sign_in(name)
    for (method, path), capability in NEEDS.items():
        code = send(person, method, path)
        if capability in MAY[name]:
            assert code not in (401, 403), (name, method, path, code)
        else:
            assert code == 403, (name, method, path, code)
    assert pools(db) == before  # DIA-0042 does not exist: whatever was allowed changed nothing


def test_a_form_without_this_sessions_csrf_token_is_refused(
    client: Portal, portal: Callable[[], Portal], db: Path
) -> None:
    assert client.post("/requests", data=DIA_0042).status_code == 403
    other = portal().sign_in("dora")
    forged = client.post("/requests", data={**DIA_0042, "csrf_token": other.csrf()})
    assert forged.status_code == 403 and "not sent from this portal" in text(forged.text)
    assert client.get("/api/services").json() == []


def test_a_delivery_requested_by_one_account_and_approved_by_another_records_both(
    portal: Callable[[], Portal], db: Path
) -> None:
    dora = portal().sign_in("dora")
    assert dora.submit("/requests", DIA_0042, follow_redirects=False).status_code == 303
    assert dora.submit("/services/DIA-0042/approve", {}).status_code == 403  # delivery may not merge

    archie = portal().sign_in("archie")
    page = archie.get("/services/DIA-0042").text
    assert 'id="decide"' in page and 'id="modify-form"' not in page
    decided = archie.submit("/services/DIA-0042/approve", {}, follow_redirects=False)
    assert decided.status_code == 303 and decided.headers["location"].endswith(
        "/services/DIA-0042?decided=deliver"
    )

    page = dora.get("/services/DIA-0042").text
    assert text(re.search(r'id="requested-by">(.*?)<', page).group(1)) == "dora"  # type: ignore[union-attr]
    assert table_rows(page, "decisions")["deliver"] == ["dia-0042-deliver", "1", "merged", "archie"]
    assert dora.get("/api/services/DIA-0042").json()["requested_by"] == "dora"

    shown = subprocess.run(
        [sys.executable, "-m", "factory_cli.main", "show", "DIA-0042"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "FACTORY_DB": str(db), "FACTORY_BACKEND": "embedded"},
    )
    assert shown.returncode == 0, shown.stderr
    assert "requested by dora" in shown.stdout
    assert re.search(r"deliver\s.*dia-0042-deliver\s.*merged\s.*archie", shown.stdout), shown.stdout


def test_closing_is_recorded_as_well(portal: Callable[[], Portal], db: Path) -> None:
    dora = portal().sign_in("dora")
    assert dora.post("/api/requests", json=DIA_0042).status_code == 201
    archie = portal().sign_in("archie")
    closed = archie.post("/api/services/DIA-0042/reject", json={})
    assert closed.status_code == 200 and closed.json()["outcome"] == "rejected"
    rows = table_rows(dora.get("/services/DIA-0042").text, "decisions")
    assert rows["deliver"] == ["dia-0042-deliver", "1", "closed", "archie"]
    assert archie.post("/api/services/DIA-0042/reject", json={}).status_code == 409  # nothing waits


# ---------------------------------------------------------------------- signing in and out
def test_signing_in_with_the_form_and_out(portal: Callable[[], Portal]) -> None:
    browser = portal()
    page = browser.get("/login?next=/capacity")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    cookie = browser.cookies.get(COOKIE)
    assert cookie and "dora" not in cookie  # sealed, not readable
    wrong = browser.post(
        "/login", data={"name": "dora", "password": "nope", "next": "/", "csrf_token": token}
    )
    unknown = browser.post(
        "/login", data={"name": "nobody", "password": "x", "next": "/", "csrf_token": token}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert "wrong name or password" in wrong.text and "wrong name or password" in unknown.text

    signed = browser.post(
        "/login",
        data={"name": "dora", "password": PASSWORD, "next": "/capacity", "csrf_token": token},
        follow_redirects=False,
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/capacity"
    header = signed.headers["set-cookie"].lower()
    assert "httponly" in header and "secure" in header and "samesite=lax" in header
    assert browser.get("/").status_code == 200
    assert browser.post("/logout", data={"csrf_token": token}).status_code == 403  # rotated at sign-in
    assert browser.submit("/logout", {}, follow_redirects=False).status_code == 303
    assert browser.get("/", follow_redirects=False).status_code == 303

    elsewhere = portal()
    token = elsewhere.csrf()
    bounced = elsewhere.post(
        "/login",
        data={"name": "dora", "password": PASSWORD, "next": "//evil.example/", "csrf_token": token},
        follow_redirects=False,
    )
    assert bounced.headers["location"] == "/"  # never sent to another site


def test_a_removed_account_is_signed_out_at_its_next_request(
    portal: Callable[[], Portal], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "accounts.json"
    accounts.add(path, "temp", PASSWORD, [accounts.Role.VIEWER])
    monkeypatch.setenv("FACTORY_ACCOUNTS", str(path))
    browser = portal().sign_in("temp")
    assert browser.get("/api/services").status_code == 200
    accounts.remove(path, "temp")
    assert browser.get("/api/services").status_code == 401


def test_the_accounts_file_holds_hashes_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    added = subprocess.run(
        [sys.executable, "-m", "factory_cli.main", "accounts", "add", "alice", "--role", "delivery",
         "--role", "architect", "--password-stdin", "--file", str(path)],
        input=PASSWORD + "\n", capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "alice: delivery, architect" in added.stdout
    assert PASSWORD not in path.read_text() and "$argon2id$" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert accounts.verify(path, "alice", PASSWORD) is not None
    assert accounts.verify(path, "alice", PASSWORD + "!") is None
    with pytest.raises(accounts.AccountError, match="at least 10 characters"):
        accounts.add(path, "bob", "short", [accounts.Role.VIEWER])


def test_without_any_account_the_portal_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACTORY_ACCOUNTS", str(tmp_path / "none.json"))
    with pytest.raises(NoAccounts, match="factory accounts add NAME --role delivery"):
        create_app(FactorySettings(backend="embedded", db=tmp_path / "inventory.sqlite3"))
    monkeypatch.setenv("FACTORY_BACKEND", "embedded")
    # `python -m portal` as a user starts it (it stops before serving anything).
    with pytest.raises(SystemExit, match=re.escape("--insecure-local on 127.0.0.1")):
        portal_main(["--port", "9"])
    with pytest.raises(SystemExit, match=re.escape("--insecure-local serves 127.0.0.1 only, not 0.0.0.0")):
        portal_main(["--insecure-local", "--host", "0.0.0.0", "--port", "9"])


def test_an_unreachable_infrahub_at_sign_in_is_a_503(db: Path) -> None:
    app = create_app(FactorySettings(backend="embedded"), Security(InfrahubAccounts("http://127.0.0.1:9")))
    browser = Portal(app, base_url="https://testserver")
    answer = browser.post("/api/session", json={"username": "otter-delivery", "password": "x"})
    assert answer.status_code == 503 and "127.0.0.1:9 is unreachable" in answer.json()["detail"]


# ---------------------------------------------------------------------- bad input at every door
LONG = "x" * 10_000


def test_bad_input_is_refused_with_a_reason_and_changes_nothing(client: Portal, db: Path) -> None:
    before = pools(db)
    token = client.csrf()
    refusals = {
        "oversized API body": client.post(
            "/api/requests", content=b'{"a": "' + b"x" * 70_000 + b'"}', headers={"content-type": "application/json"}
        ),
        "oversized form": client.post("/requests", data={**DIA_0042, "csrf_token": token, "account_reference": "x" * 70_000}),
        "unknown API field": client.post("/api/requests", json={**DIA_0042, "priority": "urgent"}),
        "unknown form field": client.post("/requests", data={**DIA_0042, "csrf_token": token, "priority": "urgent"}),
        "API as a form": client.post("/api/requests", data=DIA_0042),
        "form as JSON": client.post("/requests", json={**DIA_0042, "csrf_token": token}),
        "10,000 characters to the API": client.post("/api/requests", json={**DIA_0042, "account_reference": LONG}),
        "10,000 characters to a form": client.post("/requests", data={**DIA_0042, "csrf_token": token, "site": LONG}),
        "10,000 characters in a query": client.get("/", params={"status": LONG}),
        "malformed identifier, API": client.post("/api/services/DIA%2042;drop/modify", json={"bandwidth": "100"}),
        "malformed identifier, page": client.get("/services/" + "x" * 300),
        "malformed identifier, form": client.submit("/services/not-an-id/decommission", {}),
        "cross-origin API write": client.post(
            "/api/requests", json=DIA_0042, headers={"origin": "https://evil.example"}
        ),
    }  # fmt: skip
    expected = {
        "oversized API body": 413,
        "oversized form": 413,
        "unknown API field": 422,
        "unknown form field": 422,
        "API as a form": 415,
        "form as JSON": 415,
        "10,000 characters to the API": 422,
        "10,000 characters to a form": 422,
        "10,000 characters in a query": 422,
        "malformed identifier, API": 422,
        "malformed identifier, page": 400,
        "malformed identifier, form": 400,
        "cross-origin API write": 403,
    }
    assert {k: r.status_code for k, r in refusals.items()} == expected
    for what, answer in refusals.items():
        assert LONG not in answer.text, f"{what}: the refused value is echoed back"
        body = (
            answer.json()["detail"]
            if answer.headers["content-type"].startswith("application/json")
            else text(answer.text)
        )
        assert body, f"{what}: no reason given"
    assert "unknown field(s): priority" in text(refusals["unknown form field"].text)
    assert refusals["API as a form"].json()["detail"] == "send JSON: Content-Type: application/json"
    assert "is not a service identifier" in text(refusals["malformed identifier, page"].text)
    assert client.get("/api/services").json() == [] and pools(db) == before
