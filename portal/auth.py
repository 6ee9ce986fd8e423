"""Who is asking, and what they may do.

People sign in with a name and a password; the source of truth decides what they may do:

- On Infrahub, the portal signs in with Infrahub's own login API (``/api/auth/login``), keeps the
  person's access and refresh tokens in their session, refreshes the access token before it
  expires (``/api/auth/refresh``), and calls Infrahub with it: Infrahub's permissions and its
  activity log apply to every read and write. What the pages offer comes from Infrahub too: the
  person's permissions on ``ServiceDedicatedInternet`` on main (create: request; create and update:
  change and decommission; view) and their global ``merge_proposed_change`` permission (approve).
- On the embedded backend, a local accounts file (``portal/accounts.py``) holds roles.

The session is one cookie, encrypted and authenticated (Fernet, from ``cryptography``), HTTP-only,
Secure and SameSite=Lax, valid for ``SESSION_SECONDS``; it carries a CSRF token that every form
must send back. The JSON API takes the same cookie (``POST /api/session`` to sign in) and accepts
writes only as ``application/json`` from the portal's own origin.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import httpx
from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel, ConfigDict, ValidationError

from allocation.errors import InventoryUnavailable
from portal import accounts

COOKIE = "factory_session"
SESSION_SECONDS = 8 * 3600
REFRESH_MARGIN_SECONDS = 120  # refresh an Infrahub access token this long before it expires


class Capability(StrEnum):
    VIEW = "view"  # read services, capacity
    REQUEST = "request"  # record a request and deliver it
    CHANGE = "change"  # modify or decommission a service
    APPROVE = "approve"  # merge or close a proposed change


ROLE_CAPABILITIES: dict[accounts.Role, frozenset[Capability]] = {
    accounts.Role.DELIVERY: frozenset({Capability.VIEW, Capability.REQUEST, Capability.CHANGE}),
    accounts.Role.ARCHITECT: frozenset({Capability.VIEW, Capability.APPROVE}),
    accounts.Role.VIEWER: frozenset({Capability.VIEW}),
}


class Identity(BaseModel):
    """A signed-in person, as the session remembers them."""

    model_config = ConfigDict(frozen=True)

    name: str
    capabilities: frozenset[Capability]
    roles: tuple[str, ...] = ()
    access_token: str | None = None  # Infrahub's JWT for this person
    refresh_token: str | None = None
    access_expires: float | None = None

    def may(self, capability: Capability) -> bool:
        return capability in self.capabilities

    @property
    def described(self) -> str:
        return f"{self.name} ({', '.join(self.roles) or 'no role'})"


class Session(BaseModel):
    csrf: str
    identity: Identity | None = None

    @classmethod
    def anonymous(cls) -> Session:
        return cls(csrf=secrets.token_urlsafe(32))


class LoginRefused(Exception):
    """Wrong name or password, or an account that may not sign in (the message never says which)."""


class Authenticator(Protocol):
    async def login(self, name: str, password: str) -> Identity:
        """Raises LoginRefused."""
        ...

    async def current(self, identity: Identity) -> Identity | None:
        """The identity as it stands now (roles changed, token refreshed), or None: sign in again."""
        ...

    async def logout(self, identity: Identity) -> None: ...


# ---------------------------------------------------------------------- the session cookie
class SessionCodec:
    """Seals a session into a cookie value and back: encrypted, authenticated, time-limited."""

    def __init__(self, secret: str | None) -> None:
        key = hashlib.sha256(secret.encode()).digest() if secret else secrets.token_bytes(32)
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, session: Session) -> str:
        return self._fernet.encrypt(session.model_dump_json().encode()).decode()

    def open(self, value: str | None) -> Session | None:
        if not value:
            return None
        try:
            return Session.model_validate_json(self._fernet.decrypt(value.encode(), ttl=SESSION_SECONDS))
        except (InvalidToken, ValidationError, ValueError):
            return None


# ---------------------------------------------------------------------- local accounts
class LocalAccounts:
    """The embedded backend's accounts file; roles are re-read on every request, so removing an
    account or a role takes effect at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def login(self, name: str, password: str) -> Identity:
        account = await asyncio.to_thread(accounts.verify, self.path, name, password)
        if account is None:
            raise LoginRefused("wrong name or password")
        return _local_identity(account)

    async def current(self, identity: Identity) -> Identity | None:
        account = accounts.load(self.path).get(identity.name)
        return _local_identity(account) if account is not None else None

    async def logout(self, identity: Identity) -> None:
        return None


def _local_identity(account: accounts.Account) -> Identity:
    capabilities = frozenset().union(*(ROLE_CAPABILITIES[r] for r in account.roles))
    return Identity(name=account.name, capabilities=capabilities, roles=tuple(r.value for r in account.roles))


# ---------------------------------------------------------------------- Infrahub's accounts
_ME = """
query Me {
  AccountProfile { name { value } member_of_groups { edges { node { display_label } } } }
  InfrahubPermissions { global_permissions { edges { node { action decision } } } }
  ServiceDedicatedInternet(limit: 1) { permissions { edges { node { view create update } } } }
}
"""
_ALLOWED_ON_MAIN = ("ALLOW", "ALLOW_DEFAULT")
_APPROVING = ("merge_proposed_change", "super_admin")
_ALLOW_DEFAULT_BIT = 2  # Infrahub's PermissionDecision: 1 deny, 2 allow on main, 4 elsewhere, 6 both


class InfrahubAccounts:
    """Infrahub's accounts: its login API, its tokens, its permissions."""

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.address = address.rstrip("/")
        self.timeout = timeout

    async def login(self, name: str, password: str) -> Identity:
        async with self._http() as http:
            answer = await http.post(
                f"{self.address}/api/auth/login", json={"username": name, "password": password}
            )
            if answer.status_code in (400, 401, 403, 404, 422):
                raise LoginRefused("wrong name or password")
            answer.raise_for_status()
            tokens = answer.json()
            return await self._identity(http, tokens["access_token"], tokens["refresh_token"])

    async def current(self, identity: Identity) -> Identity | None:
        expires = identity.access_expires or 0
        if expires - time.time() > REFRESH_MARGIN_SECONDS:
            return identity
        if identity.refresh_token is None:
            return None
        async with self._http() as http:
            answer = await http.post(
                f"{self.address}/api/auth/refresh",
                headers={"Authorization": f"Bearer {identity.refresh_token}"},
            )
            if answer.status_code in (401, 403, 404):
                return None
            answer.raise_for_status()
            # Permissions are read again with the new token: a role taken away applies within the hour.
            return await self._identity(http, answer.json()["access_token"], identity.refresh_token)

    async def logout(self, identity: Identity) -> None:
        if identity.access_token is None:
            return
        async with self._http() as http:
            await http.post(
                f"{self.address}/api/auth/logout",
                headers={"Authorization": f"Bearer {identity.access_token}"},
            )

    @asynccontextmanager
    async def _http(self) -> AsyncIterator[httpx.AsyncClient]:
        """An HTTP client to Infrahub; a transport failure is InventoryUnavailable (a 503 page)."""
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                yield http
        except (httpx.TransportError, httpx.HTTPStatusError) as exc:
            raise InventoryUnavailable(f"Infrahub at {self.address} is unreachable: {exc}") from exc

    async def _identity(self, http: httpx.AsyncClient, access: str, refresh: str) -> Identity:
        answer = await http.post(
            f"{self.address}/graphql/main",
            json={"query": _ME},
            headers={"Authorization": f"Bearer {access}"},
        )
        answer.raise_for_status()
        data = answer.json().get("data") or {}
        profile = data.get("AccountProfile") or {}
        name = str((profile.get("name") or {}).get("value") or "")
        groups = tuple(
            str(e["node"]["display_label"]) for e in (profile.get("member_of_groups") or {}).get("edges", [])
        )
        return Identity(
            name=name,
            capabilities=capabilities_from_infrahub(data),
            roles=groups,
            access_token=access,
            refresh_token=refresh,
            access_expires=jwt_expiry(access),
        )


def capabilities_from_infrahub(data: dict[str, Any]) -> frozenset[Capability]:
    """What the portal offers a person, from what Infrahub answered about their permissions."""
    found: set[Capability] = set()
    kinds = ((data.get("ServiceDedicatedInternet") or {}).get("permissions") or {}).get("edges") or []
    for edge in kinds:
        node = edge.get("node") or {}
        if node.get("view") in _ALLOWED_ON_MAIN:
            found.add(Capability.VIEW)
        if node.get("create") in _ALLOWED_ON_MAIN:
            found.add(Capability.REQUEST)
            # Changing a service is service delivery's, not every account that may update one (an
            # architect's decision moves the status too): those who may also create services.
            if node.get("update") in _ALLOWED_ON_MAIN:
                found.add(Capability.CHANGE)
    permissions = ((data.get("InfrahubPermissions") or {}).get("global_permissions") or {}).get("edges") or []
    for edge in permissions:
        node = edge.get("node") or {}
        decision = int(node.get("decision") or 0)
        if node.get("action") in _APPROVING and decision & _ALLOW_DEFAULT_BIT:
            found.add(Capability.APPROVE)
    return frozenset(found)


def jwt_expiry(token: str) -> float | None:
    """A JWT's ``exp`` claim, read without checking the signature (Infrahub checks it; this only
    says when to refresh)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, ValueError, TypeError):
        return None


# ---------------------------------------------------------------------- no accounts at all
INSECURE_LOCAL = Identity(
    name="local",
    capabilities=frozenset(Capability),
    roles=("insecure-local: every capability, no sign-in",),
)
