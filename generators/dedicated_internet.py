"""The Dedicated Internet generator: Infrahub runs it for every service of the group
``automated_dedicated_internet`` in a proposed change's pipeline, or on demand with
``infrahubctl generator dedicated_internet --branch <branch> service_identifier=DIA-0042``.

It calls the shared allocation core through the same Infrahub backend the Prefect flows use, so a
service implemented by the generator and one implemented by the flows are the same. Unlike the
blog's generator it chooses ports by policy, never sets the status (the lifecycle does, and only the
merge makes a service active on main), and never allocates on main.
"""

from __future__ import annotations

from typing import Any

from infrahub_sdk.generator import InfrahubGenerator

from allocation.backends.infrahub import InfrahubInventory
from generators.implement import Skipped, describe, implement


class DedicatedInternetGenerator(InfrahubGenerator):
    async def generate(self, data: dict[str, Any]) -> None:
        identifiers = [
            edge["node"]["service_identifier"]["value"] for edge in data["ServiceDedicatedInternet"]["edges"]
        ]
        config = self.client.config
        inventory = InfrahubInventory(str(config.address), config.api_token)
        try:
            for identifier in identifiers:
                try:
                    impl = await implement(identifier, inventory, self.branch or "main")
                except Skipped as skipped:
                    self.logger.info(str(skipped))
                    continue
                self.logger.info(describe(identifier, impl))
        finally:
            await inventory.close()
