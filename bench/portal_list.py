"""How long the portal's request list takes to render with many services (embedded backend).

Builds the synthetic 50-site operator of ``bench.core`` with N services: 80% delivered and merged
(active), 10% with their delivery's proposed change open (in-delivery), 10% drafts. Then renders
pages of the list through the ASGI app in this process (FastAPI's TestClient: no network, no
browser), the first and the last page, unfiltered and filtered, and reports the median of a few
runs of each.

    python -m bench.portal_list --services 10000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from allocation import runner
from allocation.backends.embedded import EmbeddedInventory
from allocation.settings import FactorySettings
from allocation.steps import Work
from allocation.transitions import DELIVER
from bench.core import requests
from bench.topology import site_name, write_topology
from portal.app import create_app
from portal.delivery import PAGE_SIZE


async def build(path: Path, count: int, sites: int, ports: int) -> float:
    inventory = EmbeddedInventory(path)
    inventory.load(write_topology(path.parent / "topology", sites, ports))
    started = time.perf_counter()
    for n, request in enumerate(requests(count, sites)):
        await inventory.create_service(request)
        if n % 10 == 9:
            continue  # a draft
        work = await runner.run(Work(request.service_identifier, DELIVER, inventory))
        if n % 10 != 8:  # one in ten stays under review
            assert work.change is not None
            await inventory.merge_proposed_change(work.change.id)
            await runner.settle(work)
    await inventory.close()
    return time.perf_counter() - started


def timed(client: TestClient, url: str, runs: int) -> tuple[float, int]:
    client.get(url)  # warm
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.text[:200]
    return statistics.median(samples) * 1000, response.text.count('<tr id="service-')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--ports", type=int, default=200)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    last = -(-args.services // PAGE_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inventory.sqlite3"
        built = asyncio.run(build(path, args.services, args.sites, args.ports))
        print(
            f"{args.services} services on {args.sites} sites built in {built:.0f} s; {PAGE_SIZE} rows a page"
        )
        client = TestClient(create_app(FactorySettings(backend="embedded", db=path)))
        cases = [
            ("page 1", "/"),
            (f"page {last} (the last)", f"/?page={last}"),
            ("in-delivery, page 1", "/?status=in-delivery"),
            (f"site {site_name(7)}, active, page 5", f"/?status=active&site={site_name(7)}&page=5"),
            ("JSON API, 100 services from offset 9000", "/api/services?offset=9000&limit=100"),
        ]
        print("| page | median ms | rows |\n|---|---|---|")
        for label, url in cases:
            ms, rows = timed(client, url, args.runs)
            print(f"| {label} | {ms:.1f} | {rows or '-'} |")


if __name__ == "__main__":
    main()
