"""K deliveries at once on one Infrahub (slow: K merges queue behind Infrahub's global merge lock, tens
of seconds to minutes each; `make test-slow`).

Each delivery is its own client, request to merged and concluded, on a synthetic site of its own
(bench/infrahub_throughput.py), so nothing others use on a shared Infrahub is taken. Whatever the
interleaving: every service delivered complete, no VLAN ID, prefix or port given twice, every
reservation owned by what its service holds, and the site gone afterwards. The rate is printed for
the report, never asserted.
"""

from __future__ import annotations

import os

import pytest

from bench import infrahub_throughput
from tests.integration.conftest import requires_infrahub

pytestmark = [pytest.mark.integration, pytest.mark.slow, requires_infrahub]

K = int(os.environ.get("THROUGHPUT_K", "16"))


async def test_k_deliveries_at_once_give_nothing_twice_and_leak_nothing() -> None:
    (run,) = await infrahub_throughput.main([K], keep=False)
    print(
        f"K={K}: {len(run.per_service_seconds)}/{K} in {run.seconds:.0f}s = {run.per_minute:.2f} services/min"
    )
    assert run.errors == []
    assert run.checks["delivered"] == run.checks["complete"] == K
    assert (
        run.checks["duplicate_vlans"]
        == run.checks["duplicate_prefixes"]
        == run.checks["duplicate_ports"]
        == []
    )
    assert run.checks["leaks"] == []
