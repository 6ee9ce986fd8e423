"""The generator's query file is the Infrahub backend's first read of a step: the two must not drift,
or a generator run would read what the backend cannot parse (or miss what it needs)."""

from __future__ import annotations

from pathlib import Path

import yaml

from allocation.backends.infrahub import queries
from generators.dedicated_internet import QUERY_FILE

ROOT = Path(__file__).resolve().parents[2]


def test_the_generator_query_file_is_the_backends_first_read() -> None:
    lines = [line for line in QUERY_FILE.read_text().splitlines() if not line.startswith("#")]
    assert "\n".join(lines) == queries.generator_query(), (
        "generators/dedicated_internet.gql is stale: run python -m generators.dedicated_internet --write-query"
    )


def test_the_generator_query_asks_only_for_what_infrahub_passes() -> None:
    """Infrahub passes the generator definition's parameters as the query's variables: the query must
    declare no other (a run would fail on a missing variable), and the site may be left out (a
    hand-run ``infrahubctl generator ... service_identifier=ID`` still works)."""
    config = yaml.safe_load((ROOT / ".infrahub.yml").read_text())
    (definition,) = [d for d in config["generator_definitions"] if d["name"] == "dedicated_internet"]
    assert definition["parameters"] == {
        "service_identifier": "service_identifier__value",
        "site": "location__shortname__value",
    }
    text = queries.generator_query()
    assert text.startswith("query DedicatedInternet($service_identifier: String!, $site: String) {")
    assert "$branches" not in text and "$vlan_site" not in text and "$prefix_site" not in text
