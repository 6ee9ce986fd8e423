"""The check that blocks a bad merge, as Infrahub runs it in a proposed change's pipeline.

Declared in ``.infrahub.yml`` (global: it runs once per proposed change, for the change's branch).
It runs its query on the branch and on main as the branch last saw it, and logs one error per
violation ``allocation.checks.judge`` finds: an implementation that breaks a rule of the product, a
service that is not as the plan recorded in the change says. One error fails the check, and a failed
check keeps Infrahub from merging the change.
"""

from __future__ import annotations

from typing import Any

from infrahub_sdk.checks import InfrahubCheck

from allocation.backends.infrahub import review
from allocation.model import MAIN


class ServiceReviewCheck(InfrahubCheck):
    query = review.QUERY_NAME

    async def collect_data(self) -> dict[str, Any]:
        branch = self.branch_name
        variables = {"branch": branch}
        on_branch = await self.client.query_gql_query(
            name=self.query, variables=variables, branch_name=branch
        )
        at = review.branched_from(on_branch["data"])
        base = await self.client.query_gql_query(
            name=self.query, variables=variables, branch_name=MAIN, at=at
        )
        return {"branch": on_branch["data"], "base": base["data"]}

    def validate(self, data: dict[str, Any]) -> None:
        if self.branch_name == MAIN:
            return
        found = review.judge(data["branch"], data["base"])
        for violation in found.violations:
            self.log_error(violation.message, object_type="ServiceDedicatedInternet")
        if not found.violations:
            names = ", ".join(sorted(found.touched)) or "no service"
            self.log_info(f"{names}: as reviewed and within the rules")
