"""The factory command under the conditions a newcomer creates: many at once, killed mid-way, bad input.

Real processes on one embedded file. Without PREFECT_API_URL the command runs the transitions with the
plain runner: no Prefect server is started, so none can be left behind, and nothing waits for one.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import ROOT

CONCURRENT = 64


def env(db: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return {**clean, "FACTORY_DB": str(db), "FACTORY_BACKEND": "embedded"}


def factory(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "factory_cli.main", *args],
        capture_output=True,
        text=True,
        env=env(db),
        cwd=ROOT,
        timeout=600,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.sqlite3"
    assert factory("load", db=path).returncode == 0
    return path


def services_on(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT identifier, status FROM service_state WHERE branch = 'main' ORDER BY identifier"
        ).fetchall()


REQUEST = ["--account", "ACC-1", "--site", "par01", "--bandwidth", "1000", "--package", "small"]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            [
                "request",
                "DIA-0001",
                "--account",
                "A",
                "--site",
                "",
                "--bandwidth",
                "1000",
                "--package",
                "small",
            ],
            "error: invalid request: site: give a site short name such as par01 (lower-case letters, digits, dashes)",
        ),
        (
            [
                "request",
                "DIA-0001",
                "--account",
                "A",
                "--site",
                "xyz01",
                "--bandwidth",
                "1000",
                "--package",
                "small",
            ],
            "error: unknown site 'xyz01' (known sites: ams01, bru01, lyn01, par01)",
        ),
        (
            [
                "request",
                "DIA-0001",
                "--account",
                "A",
                "--site",
                "bru01",
                "--bandwidth",
                "10000",
                "--package",
                "small",
            ],
            "error: no free customer port for 10G at bru01: every port that supports this bandwidth is taken or none exists",
        ),
        (
            ["plan", "DIA-0001", "--site", "[a-z]", "--bandwidth", "1000", "--package", "small"],
            "error: invalid request: site: give a site short name such as par01 (lower-case letters, digits, dashes)",
        ),
        (["modify", "DIA-0009", "--bandwidth", "10000"], "error: no service 'DIA-0009'"),
        (["decommission", "not-an-id"], "error: invalid identifier 'not-an-id': must look like DIA-0042"),
        (["approve", "DIA-0009"], "error: no service 'DIA-0009'"),
        (["modify", "DIA-0009"], "error: give --bandwidth and/or --package"),
    ],
)
def test_a_refusal_is_one_line_on_stderr_and_exit_2(db: Path, args: list[str], line: str) -> None:
    result = factory(*args, db=db)
    assert result.returncode == 2, result.stdout
    assert result.stderr == line + "\n"
    assert result.stdout == ""
    assert services_on(db) == []


def test_a_live_service_asked_for_with_other_values_is_refused_with_a_pointer_to_modify(db: Path) -> None:
    assert factory("request", "DIA-0001", *REQUEST, "--auto-approve", db=db).returncode == 0
    bigger = ["--account", "ACC-1", "--site", "par01", "--bandwidth", "10000", "--package", "large"]
    for command in ("request", "plan"):
        args = [command, "DIA-0001", *bigger] if command == "request" else [command, "DIA-0001", *bigger[2:]]
        if command == "plan":
            args += ["--account", "ACC-1"]
        result = factory(*args, db=db)
        assert result.returncode == 2, result.stdout
        assert result.stderr.count("\n") == 1
        assert "DIA-0001 is active" in result.stderr and "factory modify DIA-0001" in result.stderr
    # The very same request again is the same service: nothing to deliver, exit 0.
    again = factory("request", "DIA-0001", *REQUEST, db=db)
    assert again.returncode == 0 and "already active: nothing to deliver" in again.stdout
    # Another site is another customer's business: refused by plan exactly as by request.
    elsewhere = ["--site", "lyn01", "--bandwidth", "1000", "--package", "small", "--account", "ACC-1"]
    planned, requested = (
        factory("plan", "DIA-0001", *elsewhere, db=db),
        factory("request", "DIA-0001", *elsewhere, db=db),
    )
    assert planned.returncode == requested.returncode == 2
    assert planned.stderr == requested.stderr
    assert services_on(db) == [("DIA-0001", "active")]


def test_sixty_four_requests_at_once_all_end_cleanly(db: Path) -> None:
    """par01 has 12 customer ports: 12 requests get one each; the other 52 are refused in one line and
    leave no record, whether refused at the check or after losing the race for the last port."""
    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(
            pool.map(lambda n: factory("request", f"DIA-{n:04d}", *REQUEST, db=db), range(CONCURRENT))
        )
    wall = time.monotonic() - started
    ok = [r for r in results if r.returncode == 0]
    refused = [r for r in results if r.returncode == 2]
    assert len(ok) + len(refused) == CONCURRENT, [r.stderr for r in results if r.returncode not in (0, 2)]
    assert len(ok) == 12
    for r in refused:
        assert r.stderr == (
            "error: no free customer port for 1G at par01: every port that supports this bandwidth is taken "
            "or none exists\n"
        ), r.stderr
    assert [status for _, status in services_on(db)] == ["in-delivery"] * 12
    print(f"{CONCURRENT} concurrent requests: {wall:.1f} s wall, {len(ok)} delivered, {len(refused)} refused")


def test_a_killed_command_leaves_no_process_behind(db: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "factory_cli.main", "request", "DIA-0001", *REQUEST, "--wait", "30"],
        env=env(db),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while ("DIA-0001", "in-delivery") not in services_on(db) and time.monotonic() < deadline:
        time.sleep(0.05)  # killed while it waits for the architect
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-s", str(child.pid)], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"processes left in the command's session: {left.stdout}"
    # Running it again finishes what the killed one started.
    again = factory("request", "DIA-0001", *REQUEST, db=db)
    assert again.returncode == 0 and "proposed change" in again.stdout
