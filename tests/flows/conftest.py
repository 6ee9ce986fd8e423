"""Flow tests: one Prefect test harness for the session, a fresh embedded inventory per test."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from allocation import architect as architects
from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.model import MAIN, ChangeState, PoolUsage, ProposedChange, Service
from allocation.policy import TransitionName
from allocation.results import TransitionResult
from allocation.settings import open_inventory
from allocation.transitions import TRANSITIONS, Transition
from flows.decommission import decommission
from flows.deliver import deliver
from flows.modify import modify
from flows.params import DecommissionParams, DeliverParams, LocalWait, ModifyParams, ReconcileParams
from flows.reconcile import ReconcileReport, reconcile
from flows.request import request
from tests import lifecycle

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


async def deliver_directly(inventory: EmbeddedInventory, service: ServiceRequest) -> None:
    """Set-up without Prefect: an active service through the plain runner."""
    await lifecycle.request_service(service, inventory)
    change = await lifecycle.prepare(service.service_identifier, lifecycle.DELIVER, inventory)
    assert change is not None
    await inventory.merge_proposed_change(change.id)


def proposed_changes(inventory: EmbeddedInventory) -> list[tuple[str, ChangeState]]:
    """Every proposed change of the file, oldest first, read straight from it."""
    rows = inventory._db.execute("SELECT branch, state FROM proposed_change ORDER BY seq").fetchall()
    return [(branch, ChangeState(state)) for branch, state in rows]


# ---------------------------------------------------------------------- the flows, run in this process
async def request_service(service: ServiceRequest) -> TransitionResult:
    return await request(service)


async def run_transition(
    name: TransitionName,
    identifier: str,
    *,
    bandwidth: Bandwidth | None = None,
    ip_package: IpPackage | None = None,
    auto_approve: bool = False,
    wait: float = 20,
) -> TransitionResult:
    """The transition's flow, in this process under the session's harness, polling ``wait`` seconds
    for the decision; with ``auto_approve`` an architect merges the change as soon as it is open."""
    local = LocalWait(seconds=wait)
    if name == "deliver":
        run = deliver(DeliverParams(service_identifier=identifier), local)
    elif name == "modify":
        run = modify(
            ModifyParams(service_identifier=identifier, bandwidth=bandwidth, ip_package=ip_package), local
        )
    else:
        run = decommission(DecommissionParams(service_identifier=identifier), local)
    if not auto_approve:
        return await run
    # The architect lives as long as the run (cancelled below): on a busy Infrahub the change may take
    # minutes to open, and a deadline of its own would leave the run waiting for nobody.
    approving = asyncio.ensure_future(
        architect(identifier.upper(), TRANSITIONS[name], "merge", timeout_seconds=None)
    )
    try:
        return await run
    finally:
        approving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await approving


async def architect(
    identifier: str,
    transition: Transition,
    decision: architects.Decision,
    timeout_seconds: float | None = 20,
) -> ProposedChange:
    """The architect beside a run, with an inventory of its own, as a person in Infrahub would be."""
    inventory = open_inventory()
    try:
        async with asyncio.timeout(timeout_seconds):
            return await architects.when_open(identifier, transition, decision, inventory)
    finally:
        await inventory.close()


async def reconcile_now(branch: str | None = None) -> ReconcileReport:
    return await reconcile(ReconcileParams(branch=branch))
