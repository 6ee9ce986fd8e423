"""The generator's query file is the Infrahub backend's first read of a step: the two must not drift,
or a generator run would read what the backend cannot parse (or miss what it needs)."""

from __future__ import annotations

from allocation.backends.infrahub import queries
from generators.dedicated_internet import QUERY_FILE


def test_the_generator_query_file_is_the_backends_first_read() -> None:
    lines = [line for line in QUERY_FILE.read_text().splitlines() if not line.startswith("#")]
    assert "\n".join(lines) == queries.generator_query(), (
        "generators/dedicated_internet.gql is stale: run python -m generators.dedicated_internet --write-query"
    )


def test_the_generator_query_asks_only_for_what_infrahub_passes() -> None:
    text = queries.generator_query()
    assert text.startswith("query DedicatedInternet($service_identifier: String!) {")
    assert "$branches" not in text and "$site" not in text  # Infrahub passes the identifier only
