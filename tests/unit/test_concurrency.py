"""Sixteen processes ask for a service at one site at the same moment, on one inventory file."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from multiprocessing.synchronize import Barrier
from pathlib import Path

from allocation.backends.embedded import EmbeddedInventory
from allocation.errors import AllocationError
from tests import lifecycle
from tests.support import DATA, request

WORKERS = 16


def _request_one(path: str, identifier: str, barrier: Barrier, results: mp.Queue[tuple[str, str]]) -> None:
    async def work() -> str:
        inventory = EmbeddedInventory(path)
        try:
            await lifecycle.request_service(request(identifier, site="par01"), inventory)
            barrier.wait()
            change = await lifecycle.prepare(identifier, lifecycle.DELIVER, inventory)
            return f"ok {change.id if change else '-'}"
        except AllocationError as error:
            return f"error {error}"
        finally:
            await inventory.close()

    results.put((identifier, asyncio.run(work())))


def test_concurrent_requests_get_distinct_resources_and_the_extra_ones_fail_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "inventory.sqlite3"
    inventory = EmbeddedInventory(path)
    inventory.load(DATA)
    free_before = sum(p.free for p in asyncio.run(inventory.port_usage()) if p.site == "par01")
    assert free_before == 12 < WORKERS

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results: mp.Queue[tuple[str, str]] = ctx.Queue()
    processes = [
        ctx.Process(target=_request_one, args=(str(path), f"DIA-{n:04d}", barrier, results))
        for n in range(WORKERS)
    ]
    for p in processes:
        p.start()
    outcomes = dict(results.get(timeout=120) for _ in processes)
    for p in processes:
        p.join(timeout=30)
        assert p.exitcode == 0

    ok = sorted(i for i, o in outcomes.items() if o.startswith("ok"))
    failed = {i: o for i, o in outcomes.items() if not o.startswith("ok")}
    assert len(ok) == free_before
    assert set(failed.values()) == {
        "error no free customer port for 1G at par01: every port that supports this bandwidth is taken or none exists"
    }

    async def check() -> None:
        impls = []
        for identifier in ok:
            change = await inventory.get_proposed_change(f"{identifier.lower()}-deliver")
            assert change is not None
            impls.append((await lifecycle.get_service(identifier, inventory, change.branch)).implementation)
        assert all(i.complete for i in impls)
        for field in ("vlan", "prefix", "port"):
            values = [getattr(i, field) for i in impls]
            assert len(set(map(repr, values))) == len(values), f"two services share a {field}"
        for identifier in failed:
            service = await lifecycle.get_service(identifier, inventory)
            assert service.status.value == "draft" and service.implementation.empty
        usage = {p.name: p.used for p in await inventory.pool_usage()}
        assert usage == {"Customer vlan pool": len(ok), "Customer prefixes pool": 8 * len(ok)}
        assert await inventory.leaks() == []
        await inventory.close()

    asyncio.run(check())
