"""The time Infrahub's proposed-change pipeline takes, with and without what this repository adds to
it (two configuration artifact definitions and the service review check), for a change touching one
service and one touching ten.

For each size: drafts are recorded, implemented on one branch (the core's plan and apply, as the
generator does), a proposed change is opened with the plan it is reviewed for, and the pipeline is
timed from the change's creation to the last of its validators completing; the change is then closed
and everything given back. First without the repository, then with this commit registered (from a
local bare clone, as tests/integration/test_review_on_infrahub.py does). Reported, never asserted.

    . .infrahub-stack/env && python -m bench.review_pipeline --services 1 --services 10
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import datetime
from pathlib import Path

from allocation import core, intake, review
from allocation.backends.infrahub import InfrahubInventory
from allocation.backends.infrahub.mapping import created_at
from allocation.intent import Bandwidth, IpPackage, ServiceRequest, ServiceStatus
from allocation.settings import InfrahubSettings
from tests.integration.review_support import CHECK, delete_branch, registered, validators

SITES = ("lyn01", "par01", "ams01")
QUIET_SECONDS = 15.0  # no validator added or still running for this long: the pipeline is over


async def pipeline_seconds(
    change_id: str, wanted: set[str], limit: float = 900
) -> tuple[float, dict[str, float]]:
    """Seconds from the change's creation to its last validator's completion, and each validator's
    own duration."""
    opened = created_at(change_id)
    assert opened is not None
    deadline = time.monotonic() + limit
    quiet_since: float | None = None
    last: tuple[int, str] | None = None
    while time.monotonic() < deadline:
        _, found = await validators(change_id)
        done = wanted <= set(found) and bool(found) and all(v.state == "completed" for v in found.values())
        marker = (len(found), ",".join(sorted(f"{k}:{v.state}" for k, v in found.items())))
        if done and marker == last:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= QUIET_SECONDS:
                ends = [v.completed for v in found.values() if v.completed]
                each = {
                    k: (v.completed - v.started).total_seconds()
                    for k, v in found.items()
                    if v.completed and v.started
                }
                return (max(ends) - opened).total_seconds(), each
        else:
            quiet_since = None
        last = marker
        await asyncio.sleep(2)
    raise TimeoutError(f"the pipeline of {change_id} did not finish in {limit}s")


async def one_change(inventory: InfrahubInventory, size: int, label: str, wanted: set[str]) -> float:
    run = int(time.time()) % 100000
    identifiers = [f"RP{run}-{n:04d}" for n in range(1, size + 1)]
    branch = f"rp{run}-{label}"
    for n, identifier in enumerate(identifiers):
        request = ServiceRequest(
            service_identifier=identifier,
            account_reference="ACC-BENCH",
            site=SITES[n % len(SITES)],
            bandwidth=Bandwidth.M100,
            ip_package=IpPackage.SMALL,
        )
        await intake.record(request, inventory)
    await inventory.create_branch(branch)
    change_id: str | None = None
    try:
        services = []
        for identifier in identifiers:
            service = await inventory.get_service(identifier, branch)
            assert service is not None
            await core.apply(await core.plan(service.as_request(), inventory, branch), inventory, branch)
            await inventory.update_service(identifier, branch, status=ServiceStatus.ACTIVE)
            services.append(await inventory.get_service(identifier, branch))
        description = f"bench: {size} service(s)\n\n" + review.record([s for s in services if s])
        change = await inventory.open_proposed_change(branch, f"bench {label}", description)
        change_id = change.id
        seconds, each = await pipeline_seconds(change.id, wanted)
        slowest = ", ".join(f"{k} {v:.0f}s" for k, v in sorted(each.items(), key=lambda kv: -kv[1])[:4])
        print(f"{label:<28}{size:>4} service(s){seconds:>8.0f} s   (validators: {slowest})", flush=True)
        if CHECK in wanted:
            _, found = await validators(change.id)
            assert found[CHECK].conclusion == "success", found[CHECK]
        return seconds
    finally:
        if change_id is not None:
            await inventory.close_proposed_change(change_id)
        for identifier in identifiers:
            await inventory.discard_changes(identifier, branch=branch)
        await delete_branch(branch)


async def main(sizes: list[int]) -> None:
    inventory = InfrahubInventory.from_settings(InfrahubSettings())
    try:
        baseline = {size: await one_change(inventory, size, f"without-{size}", set()) for size in sizes}
        with tempfile.TemporaryDirectory() as workdir:
            started = time.monotonic()
            async with registered(Path(workdir), f"service-factory-bench-{int(time.time()) % 100000}"):
                print(f"repository registered and imported in {time.monotonic() - started:.0f} s", flush=True)
                wanted = {
                    CHECK,
                    "Artifact Validator: core_switch_config",
                    "Artifact Validator: edge_router_config",
                }
                added = {size: await one_change(inventory, size, f"with-{size}", wanted) for size in sizes}
        print(
            f"{datetime.now():%Y-%m-%d %H:%M}  pipeline seconds from the change's creation to its last validator"
        )
        for size in sizes:
            print(
                f"{size:>3} service(s): {baseline[size]:.0f} s without the repository, {added[size]:.0f} s with it "
                f"(+{added[size] - baseline[size]:.0f} s)"
            )
    finally:
        await inventory.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, action="append", help="services per change (repeatable)")
    args = parser.parse_args()
    asyncio.run(main(args.services or [1, 10]))
