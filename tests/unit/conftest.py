"""Fixtures of the portal's tests: a fresh embedded inventory, three accounts, a browser per person."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from allocation.settings import FactorySettings
from portal import accounts
from portal.app import create_app
from tests.portal_support import PASSWORD, PEOPLE, Portal, load


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = load(tmp_path / "inventory.sqlite3")
    monkeypatch.setenv("FACTORY_BACKEND", "embedded")
    monkeypatch.setenv("FACTORY_DB", str(path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # the plain runner: no Prefect server to start
    return path


@pytest.fixture(scope="session")
def accounts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("accounts") / "accounts.json"
    for name, roles in PEOPLE.items():
        accounts.add(path, name, PASSWORD, [accounts.Role(r) for r in roles])
    return path


@pytest.fixture
def portal(db: Path, accounts_file: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Portal]:
    """A new browser on the portal (its own cookies), not signed in."""
    monkeypatch.setenv("FACTORY_ACCOUNTS", str(accounts_file))
    monkeypatch.setenv("PORTAL_SECRET_KEY", "tests")
    return lambda: Portal(create_app(FactorySettings()), base_url="https://testserver")


@pytest.fixture
def client(portal: Callable[[], Portal]) -> Portal:
    """Service delivery, signed in."""
    return portal().sign_in("dora")
