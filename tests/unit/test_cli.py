"""The factory command as a user runs it: real processes, real exit codes, readable errors."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, small_pools_data


def factory(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FACTORY_DB": str(db), "FACTORY_BACKEND": "embedded"}
    return subprocess.run(
        [sys.executable, "-m", "factory_cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.sqlite3"
    assert factory("load", db=path).returncode == 0
    return path


def test_demo_runs_the_lifecycle_and_exits_0(tmp_path: Path) -> None:
    result = factory("demo", "--db", str(tmp_path / "demo.sqlite3"), db=tmp_path / "unused.sqlite3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DIA-0005" in result.stdout and "decommissioned" in result.stdout
    assert "leaks: 0" in result.stdout


def test_request_approve_show_and_decommission_through_the_flows(db: Path) -> None:
    requested = factory(
        "request",
        "DIA-0042",
        "--account",
        "ACC-9",
        "--site",
        "ams01",
        "--bandwidth",
        "10000",
        "--package",
        "medium",
        db=db,
    )
    assert requested.returncode == 0, requested.stderr
    assert "waiting" in requested.stdout and "on branch dia-0042-deliver" in requested.stdout
    assert "factory approve DIA-0042" in requested.stdout
    proposed = factory("show", "DIA-0042", "--config", db=db)
    assert proposed.returncode == 0, proposed.stderr
    assert "configuration on main: none" in proposed.stdout
    assert "configuration of sw01-ams01 proposed on dia-0042-deliver:" in proposed.stdout
    assert "   switchport access vlan 1000\n" in proposed.stdout
    approved = factory("approve", "DIA-0042", db=db)
    assert approved.returncode == 0, approved.stderr
    assert "deliver of DIA-0042: done" in approved.stdout
    shown = factory("show", "DIA-0042", "--config", db=db)
    assert "active" in shown.stdout and "203.0.113.0/28" in shown.stdout and "Ethernet8" in shown.stdout
    assert "configuration of sw01-ams01 on main:" in shown.stdout
    assert "interface Ethernet8\n   description DIA-0042 | ACC-9 | 10000 Mbit/s\n" in shown.stdout
    assert "configuration of rb01-ams01 on main:" in shown.stdout
    assert (
        "interface Vlan1000\n   description DIA-0042 | ACC-9 | gateway\n   ip address 203.0.113.1/28\n"
        in (shown.stdout)
    )
    retired = factory("decommission", "DIA-0042", "--auto-approve", db=db)
    assert retired.returncode == 0, retired.stderr
    assert "DIA-0042: done, status decommissioned" in retired.stdout
    assert "0.0%" in factory("capacity", db=db).stdout


def test_request_with_auto_approve_hands_over_the_resources(db: Path) -> None:
    result = factory(
        "request",
        "DIA-0043",
        "--account",
        "ACC-9",
        "--site",
        "lyn01",
        "--bandwidth",
        "100",
        "--package",
        "small",
        "--auto-approve",
        db=db,
    )
    assert result.returncode == 0, result.stderr
    assert "DIA-0043: done, status active" in result.stdout
    assert "203.0.113.2 - 203.0.113.6 (5)" in result.stdout  # gateway .1, customer .2-.6
    assert "sw01-lyn01 Ethernet4" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "xyz01", "--bandwidth", "1000", "--package", "small"], "unknown site 'xyz01'"),
        (
            ["--site", "bru01", "--bandwidth", "10000", "--package", "small"],
            "no free customer port for 10G at bru01",
        ),
    ],
)
def test_bad_requests_exit_2_with_a_message_and_leave_nothing(
    db: Path, args: list[str], message: str
) -> None:
    result = factory("request", "DIA-0007", "--account", "ACC-1", *args, db=db)
    assert result.returncode == 2
    assert message in result.stderr
    listed = factory("list", db=db)
    assert "DIA-0007" not in listed.stdout
    assert "0.0%" in factory("capacity", db=db).stdout


def test_malformed_identifier_exits_2(db: Path) -> None:
    result = factory(
        "request",
        "DIA_42!",
        "--account",
        "A",
        "--site",
        "par01",
        "--bandwidth",
        "1000",
        "--package",
        "small",
        db=db,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: invalid request: service_identifier: must look like DIA-0042: an upper-case product "
        "prefix, a dash, digits\n"
    )


def test_exhausted_pool_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "inventory.sqlite3"
    data = small_pools_data(tmp_path / "data", vlan_start=1000, vlan_end=1000)
    assert factory("load", "--data", str(data), db=path).returncode == 0
    base = ["--account", "A", "--site", "par01", "--bandwidth", "1000", "--package", "small"]
    assert factory("request", "DIA-0001", *base, db=path).returncode == 0
    result = factory("request", "DIA-0002", *base, db=path)
    assert result.returncode == 2
    assert "pool 'Customer vlan pool' is exhausted" in result.stderr


def test_plan_previews_without_reserving(db: Path) -> None:
    result = factory(
        "plan", "DIA-0008", "--site", "lyn01", "--bandwidth", "10000", "--package", "large", db=db
    )
    assert result.returncode == 0, result.stderr
    assert "nothing reserved" in result.stdout and "Ethernet8" in result.stdout
    assert "0.0%" in factory("capacity", db=db).stdout


def test_a_branch_edited_after_review_is_refused_until_reopened(db: Path) -> None:
    base = ["--account", "ACC-1", "--site", "par01", "--bandwidth", "1000", "--package", "small"]
    assert factory("request", "DIA-0050", *base, db=db).returncode == 0
    with sqlite3.connect(db) as file:  # a hand edit: the gateway moved to another address
        file.execute(
            "UPDATE resource SET data = json_set(data, '$.address', '203.0.113.5/29') "
            "WHERE service = 'DIA-0050' AND role = 'gateway'"
        )
    refused = factory("approve", "DIA-0050", db=db)
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "error: proposed change 1 (dia-0050-deliver) cannot be merged, 2 check(s) failed: "
    )
    assert "DIA-0050: gateway 203.0.113.5/29 is not the first usable host of 203.0.113.0/29" in refused.stderr
    assert "DIA-0050 is not as reviewed" in refused.stderr
    reopened = factory("reopen", "DIA-0050", db=db)
    assert reopened.returncode == 0, reopened.stderr
    assert (
        "DIA-0050: waiting" in reopened.stdout
        and "proposed change 1 on branch dia-0050-deliver" in reopened.stdout
    )
    approved = factory("approve", "DIA-0050", db=db)
    assert approved.returncode == 0, approved.stderr
    assert "deliver of DIA-0050: done" in approved.stdout
    shown = factory("show", "DIA-0050", "--config", db=db).stdout
    assert "   ip address 203.0.113.1/29\n" in shown  # put right again by the re-opening
