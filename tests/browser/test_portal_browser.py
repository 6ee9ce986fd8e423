"""The portal in a real browser: uvicorn in a subprocess, Debian's Chromium driven by Playwright.

People sign in (local accounts: delivery, architect, viewer). Service delivery fills the form,
previews, requests; the architect merges the proposed change; the list and the service page then
show what to give the customer; the read-only account only sees."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is absent: install Debian's chromium (scripts/run-tests does) to run the browser tests",
        allow_module_level=True,
    )

from playwright.sync_api import BrowserContext, Page, expect, sync_playwright  # noqa: E402

from allocation.backends.embedded import EmbeddedInventory  # noqa: E402
from portal import accounts  # noqa: E402
from tests.support import DATA, ROOT  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ACTION_TIMEOUT_MS = 10_000
# The first flow run of the portal process starts Prefect's ephemeral server (6-9 s).
NAVIGATION_TIMEOUT_MS = 60_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def inventory_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("portal") / "inventory.sqlite3"
    inventory = EmbeddedInventory(path)
    inventory.load(DATA)
    # Playwright's sync API runs an event loop in this thread: close the file from another one.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, inventory.close()).result()
    return path


PASSWORD = "correct horse battery"
PEOPLE = {"dora": accounts.Role.DELIVERY, "archie": accounts.Role.ARCHITECT, "vera": accounts.Role.VIEWER}


@pytest.fixture(scope="module")
def accounts_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("accounts") / "accounts.json"
    for name, role in PEOPLE.items():
        accounts.add(path, name, PASSWORD, [role])
    return path


@pytest.fixture(scope="module")
def portal(
    inventory_path: Path, accounts_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`python -m portal` on a free port, as a user starts it; its base URL."""
    port = free_port()
    log = (tmp_path_factory.mktemp("logs") / "portal.log").open("w")
    env = {
        **os.environ,
        "FACTORY_BACKEND": "embedded",
        "FACTORY_DB": str(inventory_path),
        "FACTORY_ACCOUNTS": str(accounts_path),
        "PORTAL_SECRET_KEY": "browser tests",
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),  # a Prefect database of its own
    }
    env.pop("PREFECT_API_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "portal", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process)
        yield base
    finally:
        process.terminate()  # the portal stops Prefect's ephemeral server on its way out
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _wait_until_up(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the portal exited with {process.returncode}")
        try:
            with urllib.request.urlopen(base + "/login", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the portal did not answer within 30 s")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1360, "height": 900},
        )
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    page = browser.new_page()
    yield page
    page.close()
    browser.clear_cookies()  # the next test signs in afresh


def sign_in(page: Page, portal: str, name: str) -> None:
    page.goto(portal + "/")
    page.wait_for_url(re.compile(r"/login\?next="))  # nothing without signing in
    page.get_by_label("Account").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(portal + "/")
    expect(page.locator("#me")).to_contain_text(name)


def approve(db: Path, identifier: str) -> None:
    """The architect merges the open proposed change (in Infrahub, in production; here the CLI)."""
    approve_as(db, identifier, "deliver")


def approve_as(db: Path, identifier: str, transition: str) -> None:
    env = {**os.environ, "FACTORY_BACKEND": "embedded", "FACTORY_DB": str(db)}
    done = subprocess.run(
        [sys.executable, "-m", "factory_cli.main", "approve", identifier],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{transition} of {identifier}: done" in done.stdout


def fill_form(page: Page, identifier: str, account: str, site: str, bandwidth: str, package: str) -> None:
    page.get_by_label("Service identifier").fill(identifier)
    page.get_by_label("Customer account").fill(account)
    page.get_by_label("Site").select_option(site)
    page.get_by_role("radio", name=bandwidth, exact=True).check()
    page.get_by_role("radio", name=re.compile(rf"^{package}:")).check()


def test_request_preview_approve_and_hand_over(
    page: Page, portal: str, inventory_path: Path, tmp_path: Path
) -> None:
    sign_in(page, portal, "dora")
    page.goto(portal + "/requests/new")
    expect(page.get_by_label("Site").locator("option")).to_have_text(
        ["choose a site", "ams01", "bru01", "lyn01", "par01"]
    )
    fill_form(page, "DIA-0101", "ACC-77", "ams01", "10G", "medium")

    page.get_by_role("button", name="Preview").click()
    plan = page.locator("#plan")
    expect(plan).to_contain_text("Plan for DIA-0101 at ams01 (nothing reserved)")
    expect(plan).to_contain_text("a /28 prefix")
    expect(plan.locator("tbody tr")).to_have_count(4)
    expect(page.get_by_label("Service identifier")).to_have_value("DIA-0101")

    # The first request boots Prefect's ephemeral API server inside the portal (6-9 s, more on a busy
    # machine), and the click waits for the navigation it starts: give it the navigation timeout.
    page.get_by_role("button", name="Request", exact=True).click(timeout=NAVIGATION_TIMEOUT_MS)
    page.wait_for_url(re.compile(r"/\?requested=DIA-0101$"))
    expect(page.locator("#confirmation")).to_contain_text("DIA-0101 requested: in-delivery")
    expect(page.locator("#confirmation")).to_contain_text("dia-0101-deliver")
    row = page.locator("#service-DIA-0101")
    expect(row).to_contain_text("in-delivery")
    expect(row).to_contain_text("dia-0101-deliver")
    expect(row).to_contain_text("allocated once active")

    approve(inventory_path, "DIA-0101")
    page.reload()
    cells = row.locator("td")
    expect(cells.nth(5)).to_have_text("active")
    expect(cells.nth(7)).to_have_text(re.compile(r"^1\d{3}$"))  # VLAN
    expect(cells.nth(8)).to_have_text(re.compile(r"^203\.0\.113\.\d+/28$"))  # prefix
    expect(cells.nth(9)).to_have_text(re.compile(r"^203\.0\.113\.\d+$"))  # gateway
    expect(cells.nth(10)).to_have_text(re.compile(r"ams01"))  # port on a core switch of the site
    page.screenshot(path=str(tmp_path / "requests.png"), full_page=True)

    row.get_by_role("link", name="DIA-0101").click()
    handover = page.locator("#handover")
    expect(handover).to_contain_text("Handover: what to give the customer")
    expect(handover).to_contain_text("10000 Mbit/s")
    expect(handover.locator("tr", has_text="gateway")).to_contain_text(re.compile(r"203\.0\.113\.\d+"))
    expect(handover.locator("tr", has_text="customer addresses")).to_contain_text("(13)")


def test_bad_requests_show_the_error_and_add_nothing(page: Page, portal: str) -> None:
    sign_in(page, portal, "dora")
    page.goto(portal + "/requests/new")
    fill_form(page, "DIA-0102", "ACC-78", "bru01", "10G", "small")
    page.get_by_role("button", name="Request", exact=True).click(timeout=NAVIGATION_TIMEOUT_MS)
    expect(page.locator("#form-error")).to_contain_text("The request was not recorded")
    expect(page.locator("#error-bandwidth")).to_have_text(
        re.compile(r"no free customer port for 10G at bru01")
    )
    expect(page.get_by_label("Service identifier")).to_have_value("DIA-0102")  # nothing to retype

    # A CRM typing an unknown site through the API.
    answer = page.request.post(
        portal + "/api/requests",
        data={
            "service_identifier": "DIA-0103",
            "account_reference": "ACC-79",
            "site": "zzz01",
            "bandwidth": "1000",
            "ip_package": "small",
        },
    )
    assert answer.status == 400 and "unknown site 'zzz01'" in answer.json()["detail"]

    page.goto(portal + "/")
    expect(page.locator("#service-DIA-0102")).to_have_count(0)
    expect(page.locator("#service-DIA-0103")).to_have_count(0)


def request_by_api(page: Page, portal: str, identifier: str, site: str = "lyn01") -> None:
    answer = page.request.post(
        portal + "/api/requests",
        data={
            "service_identifier": identifier,
            "account_reference": "ACC-80",
            "site": site,
            "bandwidth": "1000",
            "ip_package": "small",
        },
    )
    assert answer.status == 201, answer.text()


def test_change_then_decommission_an_active_service_from_its_page(
    page: Page, portal: str, inventory_path: Path, tmp_path: Path
) -> None:
    sign_in(page, portal, "dora")
    request_by_api(page, portal, "DIA-0201")
    approve(inventory_path, "DIA-0201")
    page.goto(portal + "/services/DIA-0201")
    holds = page.locator("#plan")
    expect(holds.locator("tr", has_text="bandwidth")).to_contain_text("1000 Mbit/s")

    form = page.locator("#modify-form")
    form.get_by_role("radio", name="10G", exact=True).check()
    form.get_by_role("radio", name=re.compile(r"^large:")).check()
    form.get_by_role("button", name="Ask for the change").click()
    page.wait_for_url(re.compile(r"/services/DIA-0201\?asked=modify$"))
    expect(page.locator("#confirmation")).to_contain_text("modify of DIA-0201 requested")
    bandwidth = page.locator("#plan tr", has_text="bandwidth")
    expect(bandwidth.locator("td")).to_have_text(["1000 Mbit/s", "10000 Mbit/s"])
    expect(page.locator("#plan tr.changed")).to_have_count(
        6
    )  # status, bandwidth, package, prefix, port, gateway
    expect(page.locator("#modify-form")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "service-modify.png"), full_page=True)

    approve_as(inventory_path, "DIA-0201", "modify")
    page.reload()
    expect(page.locator("#plan tr", has_text="bandwidth")).to_contain_text("10000 Mbit/s")
    decommission = page.locator("#decommission-form")
    decommission.get_by_role("checkbox").check()
    decommission.get_by_role("button", name="Decommission DIA-0201").click()
    page.wait_for_url(re.compile(r"\?asked=decommission$"))
    expect(page.locator("h1 .status")).to_have_text("in-decommissioning")
    expect(page.locator("#plan tr", has_text="VLAN").locator("td").nth(1)).to_have_text("-")


def test_capacity_shows_bars_and_the_list_filters_and_pages(page: Page, portal: str, tmp_path: Path) -> None:
    sign_in(page, portal, "dora")
    request_by_api(page, portal, "DIA-0301", site="par01")
    page.goto(portal + "/")
    page.get_by_role("link", name="Capacity").click()
    expect(page.locator("#pools svg.bar")).to_have_count(2)
    bar = page.locator("#port-bar-sw01-par01")
    expect(bar).to_have_attribute("aria-label", re.compile(r"^sw01-par01: \d of 6 ports used$"))
    assert bar.bounding_box() is not None and bar.bounding_box()["width"] > 100  # type: ignore[index]
    page.screenshot(path=str(tmp_path / "capacity.png"), full_page=True)

    page.goto(portal + "/")
    page.locator("#filter-status").select_option("in-delivery")
    page.locator("#filter-site").select_option("par01")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"/\?status=in-delivery&site=par01$"))
    rows = page.locator("#requests tbody tr")
    expect(rows.first).to_contain_text("par01")
    for cell in rows.locator("td:nth-child(3)").all_text_contents():
        assert cell == "par01"
    expect(page.locator("#page-summary").first).to_contain_text("page 1 of 1")


def test_each_role_sees_and_does_what_it_may(page: Page, portal: str, tmp_path: Path) -> None:
    sign_in(page, portal, "dora")
    request_by_api(page, portal, "DIA-0401", site="ams01")
    page.goto(portal + "/services/DIA-0401")
    expect(page.locator("#decide")).to_have_count(0)  # delivery may not merge
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login$"))

    sign_in(page, portal, "vera")
    expect(page.get_by_role("link", name="New request")).to_have_count(0)
    page.goto(portal + "/requests/new")
    expect(page.locator(".error")).to_have_text("vera (viewer) may not request services")
    page.goto(portal + "/services/DIA-0401")
    expect(page.locator("#decide")).to_have_count(0)
    expect(page.locator("#requested-by")).to_have_text("dora")
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, portal, "archie")
    page.goto(portal + "/services/DIA-0401")
    page.get_by_role("button", name="Merge (approve)").click()
    page.wait_for_url(re.compile(r"/services/DIA-0401\?decided=deliver$"))
    expect(page.locator("#notice")).to_contain_text("deliver: your decision is recorded")
    expect(page.locator("h1 .status")).to_have_text("active")
    expect(page.locator("#decisions tbody tr").first.locator("td")).to_have_text(
        ["deliver", "dia-0401-deliver", re.compile(r"^\d+$"), "merged", "archie"]
    )
    expect(page.locator("#modify-form")).to_have_count(0)  # the architect does not change services
    page.screenshot(path=str(tmp_path / "architect.png"), full_page=True)
