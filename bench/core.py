"""Throughput and memory of the allocation core on the embedded backend, at growing scale.

For N services spread over a synthetic 50-site operator, with the plain runner on the transition
declarations: request, then delivery up to its open proposed change (begin, plan, allocate, mark,
open), then the architect's round (merge, conclude), then decommission + merge.
Cost per service is reported per slice of the run, to show it stays flat as the inventory fills.

    python -m bench.core --services 1000 --services 10000
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from allocation import runner
from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.steps import Work
from allocation.transitions import DECOMMISSION, DELIVER
from bench.topology import site_name, write_topology

PACKAGES = (IpPackage.SMALL, IpPackage.SMALL, IpPackage.MEDIUM, IpPackage.LARGE)
BANDWIDTHS = (Bandwidth.M100, Bandwidth.G1, Bandwidth.G1, Bandwidth.G10)


def requests(count: int, sites: int) -> list[ServiceRequest]:
    return [
        ServiceRequest(
            service_identifier=f"BENCH-{n:06d}",
            account_reference=f"ACC-{n % 997}",
            site=site_name(n % sites),
            bandwidth=BANDWIDTHS[n % len(BANDWIDTHS)],
            ip_package=PACKAGES[(n // 7) % len(PACKAGES)],
        )
        for n in range(count)
    ]


async def run(count: int, sites: int, ports: int, workdir: Path) -> dict[str, float]:
    data = write_topology(workdir / f"topology-{count}", sites, ports)
    inventory = EmbeddedInventory(workdir / f"bench-{count}.sqlite3")
    started = time.perf_counter()
    inventory.load(data)
    load_s = time.perf_counter() - started
    batch = requests(count, sites)
    slices = 5
    slice_rates: list[float] = []

    apply_s = 0.0
    changes: list[Work] = []
    for chunk in range(slices):
        part = batch[chunk * count // slices : (chunk + 1) * count // slices]
        t0 = time.perf_counter()
        for request in part:
            await inventory.create_service(request)
            work = await runner.run(Work(request.service_identifier, DELIVER, inventory))
            changes.append(work)
        elapsed = time.perf_counter() - t0
        apply_s += elapsed
        slice_rates.append(len(part) / elapsed)

    t0 = time.perf_counter()
    for work in changes:
        assert work.change is not None
        await inventory.merge_proposed_change(work.change.id)
        await runner.settle(work)
    review_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for request in batch:
        work = await runner.run(Work(request.service_identifier, DECOMMISSION, inventory))
        assert work.change is not None
        await inventory.merge_proposed_change(work.change.id)
        await runner.settle(work)
    release_s = time.perf_counter() - t0

    leaks = await inventory.leaks()
    in_use = sum(p.used for p in await inventory.pool_usage())
    await inventory.close()
    if leaks or in_use:
        raise SystemExit(f"bench found {len(leaks)} leaks and {in_use} resources still in use")
    return {
        "services": count,
        "load_s": load_s,
        "apply_per_s": count / apply_s,
        "first_slice_per_s": slice_rates[0],
        "last_slice_per_s": slice_rates[-1],
        "review_merge_per_s": count / review_s,
        "decommission_per_s": count / release_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--services", type=int, action="append", help="N (repeatable); default 1000 and 10000"
    )
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--ports", type=int, default=200, help="customer ports per core switch")
    args = parser.parse_args()
    counts = args.services or [1000, 10000]
    print(f"synthetic operator: {args.sites} sites, 2 core switches x {args.ports} customer ports per site")
    header = (
        "N",
        "load s",
        "apply/s",
        "first 20%/s",
        "last 20%/s",
        "review+merge/s",
        "decommission/s",
        "peak RSS MiB",
    )
    print(" | ".join(header))
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            r = asyncio.run(run(count, args.sites, args.ports, Path(tmp)))
            print(
                f"{count} | {r['load_s']:.1f} | {r['apply_per_s']:.0f} | {r['first_slice_per_s']:.0f} | "
                f"{r['last_slice_per_s']:.0f} | {r['review_merge_per_s']:.0f} | {r['decommission_per_s']:.0f} | "
                f"{r['peak_rss_mib']:.0f}"
            )


if __name__ == "__main__":
    main()
