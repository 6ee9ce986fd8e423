"""Shared fixtures: a fresh embedded inventory loaded with Otter-net."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import Phase, settings

from allocation.backends.embedded import EmbeddedInventory
from tests.support import DATA

# Property tests: the fast suite and the mutation run check the same examples every time (a failure
# reproduces, a mutation score can be rerun); `make test-slow` explores at random, far longer.
settings.register_profile(
    "fast", max_examples=100, deadline=None, derandomize=True, database=None, print_blob=True
)
settings.register_profile(
    "mutation", settings.get_profile("fast"), max_examples=10, phases=[Phase.explicit, Phase.generate]
)
settings.register_profile("slow", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (CI's timeout, `kill`) would end the session without its teardown, and the Prefect
    # harness's API server process would outlive it. As an interrupt, fixtures are torn down.
    signal.signal(signal.SIGTERM, _interrupted)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        help="run the slow tests: exhaustive property runs, the review pipeline on Infrahub (make test-slow)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: make test-slow (--run-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
async def inventory(tmp_path: Path) -> AsyncIterator[EmbeddedInventory]:
    inv = EmbeddedInventory(tmp_path / "inventory.sqlite3")
    inv.load(DATA)
    yield inv
    await inv.close()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session, shared by flow, portal and integration tests.
    Harnesses must not nest: a second one started inside the first left a flow run hanging."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(), temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
