"""The connection to Infrahub: one SDK client, one pooled HTTP connection, every request counted.

Only SDK calls that exist in infrahub-sdk 1.13 (bundled with the Infrahub 1.4 task worker) and
1.23 (our venv) are used: ``InfrahubClient(address, config=Config(...))`` with a custom
``requester``, ``execute_graphql`` and ``branch.create``. The requester keeps one
``httpx.AsyncClient`` open (the SDK's default opens a connection per request), counts GraphQL
round trips and turns transport failures into ``InventoryUnavailable``.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import httpx
from infrahub_sdk import Config, InfrahubClient
from infrahub_sdk.exceptions import (
    AuthenticationError,
    GraphQLError,
    JsonDecodeError,
    ServerNotReachableError,
    ServerNotResponsiveError,
    URLNotFoundError,
)

from allocation.errors import InventoryUnavailable, PermissionDenied, Unauthenticated


class Busy(InventoryUnavailable):
    """Infrahub answered too slowly or with a server error: it is there, and busy. What was asked may
    still be under way (a task it started), so a repeat of an idempotent request is worth it."""


class Connection:
    """An SDK client on a persistent HTTP connection. Not shared between event loops: open one per
    inventory, close it with the inventory."""

    def __init__(
        self,
        address: str,
        token: str | None,
        timeout: int = 60,
        *,
        sdk: InfrahubClient | None = None,
        access_token: str | None = None,
    ) -> None:
        self.address = address.rstrip("/")
        self.timeout = timeout
        self.round_trips = 0
        self.operations: Counter[str] = Counter()  # requests per GraphQL operation name
        self._http: httpx.AsyncClient | None = None
        # A person's JWT from Infrahub's login API (the portal): Infrahub then applies that person's
        # permissions and records them in its activity log, instead of the API token's account.
        self._bearer = access_token
        self._counted_by_requester = sdk is None
        if sdk is None:
            config = Config(address=self.address, api_token=token, timeout=timeout, requester=self._request)
            sdk = InfrahubClient(address=self.address, config=config)
        self.sdk = sdk

    @classmethod
    def wrap(cls, client: InfrahubClient) -> Connection:
        """Send through an SDK client someone else configured and owns (a generator's tracking client):
        its own transport, not this module's requester; ``round_trips`` counts what goes through here."""
        return cls(str(client.address), None, int(client.default_timeout or 60), sdk=client)

    async def _request(
        self,
        url: str,
        method: Any,
        headers: dict[str, Any],
        timeout: int,  # noqa: ASYNC109  (the name is the SDK requester protocol's)
        payload: dict[str, Any] | None = None,
    ) -> httpx.Response:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=timeout)
        self.round_trips += 1
        self.operations[_operation(payload)] += 1
        verb = str(getattr(method, "value", method)).upper()
        if self._bearer is not None:
            headers = {**headers, "Authorization": f"Bearer {self._bearer}"}
            headers.pop("X-INFRAHUB-KEY", None)
        try:
            try:
                response = await self._http.request(verb, url, headers=headers, json=payload, timeout=timeout)
            except (httpx.ReadError, httpx.RemoteProtocolError):
                # A pooled connection the server had just closed (keep-alive): a read is sent again
                # once on a new one; a write is not (it may have been done).
                if not _operation(payload).startswith("query"):
                    raise
                response = await self._http.request(verb, url, headers=headers, json=payload, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise Busy(
                f"Infrahub at {self.address} is unreachable: no answer within {timeout}s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise self.unavailable(str(exc) or type(exc).__name__) from exc
        if response.status_code >= 500:
            raise Busy(f"Infrahub at {self.address} is unreachable: HTTP {response.status_code} from {url}")
        if response.status_code == 403:
            raise PermissionDenied(f"Infrahub refused: {_errors(response)}")
        if response.status_code == 401:
            raise Unauthenticated(f"Infrahub no longer accepts these credentials: {_errors(response)}")
        return response

    def unavailable(self, reason: str) -> InventoryUnavailable:
        return InventoryUnavailable(f"Infrahub at {self.address} is unreachable: {reason}")

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        branch: str = "main",
        at: str | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (passed to the SDK, which owns the request)
    ) -> dict[str, Any]:
        """Run one GraphQL document (one round trip), on ``branch`` as it is now or as it was ``at``
        a time. GraphQL errors come back as ``GraphQLError``; ``timeout`` overrides the default for a
        request that waits for an Infrahub task."""
        if not self._counted_by_requester:
            self.round_trips += 1  # a wrapped client: count here, its transport does not
            self.operations[_operation({"query": query})] += 1
        try:
            data: dict[str, Any] = await self.sdk.execute_graphql(
                query=query,
                variables=variables,
                branch_name=branch,
                at=at,
                timeout=int(timeout) if timeout else None,
            )
        except (ServerNotReachableError, ServerNotResponsiveError, JsonDecodeError) as exc:
            raise self.unavailable(str(exc) or type(exc).__name__) from exc
        except AuthenticationError as exc:
            raise InventoryUnavailable(f"Infrahub at {self.address} refused the API token: {exc}") from exc
        except URLNotFoundError as exc:
            raise InventoryUnavailable(f"Infrahub at {self.address}: {exc}") from exc
        return data

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def _errors(response: httpx.Response) -> str:
    try:
        found = response.json().get("errors") or []
        return " | ".join(str(e.get("message", e)) for e in found) or response.reason_phrase
    except ValueError:
        return response.reason_phrase


def messages(error: GraphQLError) -> str:
    return " | ".join(str(e.get("message", e)) for e in error.errors)


_OPERATION = re.compile(r"^\s*(query|mutation)\s+(\w+)")


def _operation(payload: dict[str, Any] | None) -> str:
    """``query View``, ``mutation Batch``: what a request was, for counting."""
    found = _OPERATION.match(str((payload or {}).get("query", "")))
    return f"{found.group(1)} {found.group(2)}" if found else "other"
