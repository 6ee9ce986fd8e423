"""Throughput and memory of the allocation core on the embedded backend, at growing scale.

For N services spread over a synthetic 50-site operator: request + plan + apply on the service's
branch (the core), then the review round (proposed change, merge), then decommission + merge.
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

from allocation import core, lifecycle, policy
from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
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
    for chunk in range(slices):
        part = batch[chunk * count // slices : (chunk + 1) * count // slices]
        t0 = time.perf_counter()
        for request in part:
            await inventory.create_service(request)
            branch = await lifecycle.begin(request.service_identifier, lifecycle.DELIVER, inventory)
            assert branch is not None
            await core.apply(await core.plan(request, inventory, branch), inventory, branch)
        elapsed = time.perf_counter() - t0
        apply_s += elapsed
        slice_rates.append(len(part) / elapsed)

    t0 = time.perf_counter()
    for request in batch:
        identifier = request.service_identifier
        branch = policy.branch_name(identifier, "deliver")
        await lifecycle.mark_target(identifier, lifecycle.DELIVER, inventory, branch)
        review = await lifecycle.request_review(identifier, lifecycle.DELIVER, inventory, branch)
        await inventory.merge_proposed_change(review.id)
    review_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for request in batch:
        change = await lifecycle.prepare(request.service_identifier, lifecycle.DECOMMISSION, inventory)
        assert change is not None
        await inventory.merge_proposed_change(change.id)
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
