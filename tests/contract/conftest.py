"""One contract, two backends: every test here runs on the embedded file and, when INFRAHUB_ADDRESS
points at a live Infrahub loaded with schemas/ and data/, on Infrahub too.

Tests assert differences (a pool's use before and after), never absolute numbers, so they also hold
on a long-lived Infrahub that earlier runs have written to; and each gives back what it takes.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from allocation.backends.embedded import EmbeddedInventory
from allocation.inventory import Inventory
from tests.support import DATA

_RUN = int(time.time()) % 100000
_COUNTER = itertools.count(1)


def _backends() -> list[object]:
    infrahub = pytest.param(
        "infrahub",
        marks=[
            pytest.mark.integration,
            pytest.mark.skipif(not os.environ.get("INFRAHUB_ADDRESS"), reason="INFRAHUB_ADDRESS is not set"),
        ],
    )
    return ["embedded", infrahub]


@pytest.fixture(params=_backends())
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Inventory]:
    if request.param == "embedded":
        inventory = EmbeddedInventory(tmp_path / "inventory.sqlite3")
        inventory.load(DATA)
        yield inventory
        await inventory.close()
        return
    from allocation.backends.infrahub import InfrahubInventory  # type: ignore[import-not-found,unused-ignore]
    from allocation.settings import InfrahubSettings

    remote = InfrahubInventory.from_settings(InfrahubSettings())
    yield remote
    # The test's branches go (its proposed changes stay): every open branch costs a diff update at
    # every merge anybody makes on a shared Infrahub.
    prefix = f"ct{_RUN}-"
    branches = await remote._gql("query { Branch { name } }")
    for name in [b["name"] for b in branches["Branch"] if b["name"].startswith(prefix)]:
        await remote._gql(
            "mutation($n: String!) { BranchDelete(data: {name: $n}, wait_until_completion: false) { ok } }",
            {"n": name},
        )
    await remote.close()


@pytest.fixture
def new_id() -> Callable[[], str]:
    """Service identifiers unique across runs (a shared Infrahub keeps what earlier runs recorded)."""
    return lambda: f"CT{_RUN}-{next(_COUNTER):04d}"
