"""The Dedicated Internet generator: Infrahub runs it for every service of the group
``automated_dedicated_internet`` in a proposed change's pipeline, or on demand with
``infrahubctl generator dedicated_internet --branch <branch> service_identifier=DIA-0042``.

It calls the shared allocation core through the same Infrahub backend the Prefect flows use, so a
service implemented by the generator and one implemented by the flows are the same. Unlike the
blog's generator it chooses ports by policy, never sets the status (the lifecycle does, and only the
merge makes a service active on main), and never allocates on main.

Requests: the generator's query (run by Infrahub before ``generate``, with the service's site as a
parameter) is the read of the step (``queries.generator_query``): the service, what it holds, its
site's free ports and the port claims there. A run that finds everything in place sends nothing
more; one that allocates writes twice (what the pools choose and the port's claim, then their
records, the port's configuration and the gateway). The pools' room is not counted first: a pool
with nothing left says so, and what the run took is given back. Every request goes through
``self.client``, inside the SDK's tracking: the objects a run creates (VLAN, prefix, gateway
interface and address) are recorded in the generator's group (``CoreGeneratorAwareGroup``, as the
definition does not run after merges), so Infrahub knows which objects the generator made. A run that
writes nothing records nothing (the objects are the flows' if the flows made them). Counted through
``infrahubctl`` (``bench/generator_roundtrips.py``): 5 requests for a run that implements a service
(the query, two writes, the group, and infrahubctl's schema read), 2 for a run that finds everything
in place (the query and the schema read). Run in-process as Infrahub's worker runs it, also 5: the
query, two writes, and the group's upsert with the schema read it needs (the SDK's tracking client
starts with no schema).

``protocols.py`` (``infrahubctl protocols --schemas schemas --out generators/protocols.py``) gives the
kinds this module reads their names and types; nodes are not loaded as SDK objects, which would cost
a request per node.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from infrahub_sdk.generator import InfrahubGenerator

from allocation.backends.infrahub import InfrahubInventory, queries
from generators.implement import Skipped, describe, implement
from generators.protocols import ServiceDedicatedInternet

QUERY_FILE = Path(__file__).with_name("dedicated_internet.gql")


class DedicatedInternetGenerator(InfrahubGenerator):
    async def generate(self, data: dict[str, Any]) -> None:
        kind = ServiceDedicatedInternet.__name__
        identifiers = [edge["node"]["service_identifier"]["value"] for edge in data[kind]["edges"]]
        branch = self.branch or "main"
        inventory = InfrahubInventory.from_client(self.client)
        for identifier in identifiers:
            try:
                view = inventory.view_from(data, identifier, branch)
                impl = await implement(identifier, inventory, branch, view=view)
            except Skipped as skipped:
                self.logger.info(str(skipped))
                continue
            made = inventory.written_nodes(identifier, branch)
            if made:
                await self.client.group_context.add_related_nodes(ids=made, update_group_context=True)
                # The core gives back what a service no longer holds before it allocates anew, so the
                # tracking's own clean-up of members a run did not produce would find nothing to
                # delete; it would cost a read of the group on every run.
                self.client.group_context.delete_unused_nodes = False
            self.logger.info(describe(identifier, impl))


def write_query() -> None:
    """Write the generator's query file from the backend's query (they must not drift)."""
    header = "".join(line + "\n" for line in QUERY_FILE.read_text().splitlines() if line.startswith("#"))
    QUERY_FILE.write_text(header + queries.generator_query() + "\n")


if __name__ == "__main__" and sys.argv[1:] == ["--write-query"]:
    write_query()
