"""Flow tests: one Prefect test harness for the session, a fresh embedded inventory per test."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from allocation import lifecycle
from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import ServiceRequest
from allocation.model import MAIN, PoolUsage, Service

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(autouse=True)
def _on_the_session_harness(prefect_harness: None) -> None:
    """Every flow test runs against the session's Prefect test server (tests/conftest.py)."""


@pytest.fixture(scope="session")
def loaded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Otter-net loaded once; each test copies the file."""
    path = tmp_path_factory.mktemp("template") / "inventory.sqlite3"
    inventory = EmbeddedInventory(path)
    inventory.load(DATA)
    inventory._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    inventory._db.close()
    return path


def fresh_copy(template: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return target


@pytest.fixture
def inventory_path(loaded_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = fresh_copy(loaded_template, tmp_path / "inventory.sqlite3")
    monkeypatch.setenv("FACTORY_BACKEND", "embedded")
    monkeypatch.setenv("FACTORY_DB", str(path))
    return path


@pytest.fixture
async def inventory(inventory_path: Path) -> AsyncIterator[EmbeddedInventory]:
    inv = EmbeddedInventory(inventory_path)
    yield inv
    await inv.close()


def dia(number: int, site: str = "par01", bandwidth: str = "1000", package: str = "small") -> ServiceRequest:
    return ServiceRequest(
        service_identifier=f"DIA-{number:04d}",
        account_reference="ACC-1",
        site=site,
        bandwidth=bandwidth,
        ip_package=package,
    )


async def usage(inventory: EmbeddedInventory) -> dict[str, int]:
    pools: list[PoolUsage] = await inventory.pool_usage()
    used = {p.name: p.used for p in pools}
    used["ports"] = sum(p.used for p in await inventory.port_usage())
    return used


async def on_main(inventory: EmbeddedInventory, identifier: str) -> Service:
    return await lifecycle.get_service(identifier, inventory, MAIN)


async def deliver_directly(inventory: EmbeddedInventory, request: ServiceRequest) -> None:
    """Set-up without Prefect: an active service through the bare lifecycle steps."""
    from allocation import core

    await lifecycle.request_service(request, inventory)
    branch = await lifecycle.begin(request.service_identifier, lifecycle.DELIVER, inventory)
    assert branch is not None
    plan = await lifecycle.plan_on_branch(request.service_identifier, inventory, branch)
    await core.apply(plan, inventory, branch)
    await lifecycle.mark_target(request.service_identifier, lifecycle.DELIVER, inventory, branch)
    change = await lifecycle.request_review(request.service_identifier, lifecycle.DELIVER, inventory, branch)
    await inventory.merge_proposed_change(change.id)
