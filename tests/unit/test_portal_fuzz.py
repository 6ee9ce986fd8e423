"""A short fuzz run of every route from the portal's own OpenAPI description (schemathesis on
Hypothesis): whatever comes in, signed in with every capability, the portal answers with no 5xx.

Valid requests do run (deliveries, modifies, decommissions, decisions on a fresh embedded
inventory), so the fuzzer reaches the core, not only the validation. The figures (examples run,
time) are printed with ``-s``; nothing is asserted about them."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from allocation.settings import FactorySettings
from portal import accounts
from portal.app import create_app
from portal.auth import COOKIE
from tests.portal_support import PASSWORD, Portal

# Short in the fast suite; FUZZ_EXAMPLES=200 for a longer run.
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "12"))


def test_no_route_answers_5xx_to_generated_input(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "accounts.json"
    accounts.add(path, "fuzz", PASSWORD, [accounts.Role.DELIVERY, accounts.Role.ARCHITECT])
    monkeypatch.setenv("FACTORY_ACCOUNTS", str(path))
    monkeypatch.setenv("PORTAL_SECRET_KEY", "fuzz")
    app = create_app(FactorySettings())
    browser = Portal(app, base_url="https://testserver")
    assert browser.post("/api/session", json={"username": "fuzz", "password": PASSWORD}).status_code == 200
    cookie = {"cookie": f"{COOKIE}={browser.cookies.get(COOKIE)}"}

    statuses: Counter[int] = Counter()
    failures: list[str] = []
    started = time.perf_counter()
    operations = [
        result.ok()
        for result in schemathesis.openapi.from_asgi("/api/openapi.json", app).get_all_operations()
    ]
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,  # the same examples every run: a failure is reproducible
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def call(case: schemathesis.Case) -> None:
            headers = dict(cookie)
            if (
                case.path.startswith("/api/")
                and case.method == "POST"
                and case.body is schemathesis.core.NOT_SET
            ):
                headers["content-type"] = (
                    "application/json"  # what any client of a body-less JSON write sends
                )
            response = case.call(base_url="https://testserver", headers=headers)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                )

        call()
    seconds = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\nfuzz: {len(operations)} operations, {sum(statuses.values())} examples in {seconds:.1f} s; "
            f"answers {dict(sorted(statuses.items()))}"
        )
    assert failures == []
