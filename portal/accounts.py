"""Local accounts for the portal on the embedded backend: who may sign in, and in which roles.

On Infrahub, Infrahub's own accounts, groups and roles decide (``portal/auth.py``); this file is
for the laptop and CI without a server. One JSON file, readable by its owner only, holding an
Argon2id hash per account (argon2-cffi; never a password) and the account's roles. Nobody has a
role unless ``factory accounts add`` gave it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from enum import StrEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[a-z][a-z0-9._-]{1,31}$"
MIN_PASSWORD = 10


class Role(StrEnum):
    DELIVERY = "delivery"  # request, change and decommission services
    ARCHITECT = "architect"  # merge or close proposed changes
    VIEWER = "viewer"  # read only


class Account(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    roles: tuple[Role, ...]
    password_hash: str


class AccountError(ValueError):
    """A name, password or role that cannot be used; the message says why."""


_hasher = PasswordHasher()
# Verifying against this hash when the name is unknown costs what a real check costs, so the time a
# refusal takes does not tell which names exist.
_DUMMY_HASH = _hasher.hash("not an account of this portal")


def default_path() -> Path:
    return Path.home() / ".local" / "share" / "service-factory" / "accounts.json"


def path_from_env() -> Path:
    configured = os.environ.get("FACTORY_ACCOUNTS")
    return Path(configured) if configured else default_path()


def load(path: Path) -> dict[str, Account]:
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {name: Account(name=name, **fields) for name, fields in raw.get("accounts", {}).items()}


def save(path: Path, accounts: dict[str, Account]) -> None:
    """Write atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "accounts": {
            a.name: {"roles": [r.value for r in a.roles], "password_hash": a.password_hash}
            for a in sorted(accounts.values(), key=lambda a: a.name)
        }
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".accounts-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(body, handle, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add(path: Path, name: str, password: str, roles: list[Role]) -> Account:
    """Create or replace an account (a new password, new roles)."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise AccountError(f"{name!r} is not an account name: lower-case letters, digits, '.', '_', '-'")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password needs at least {MIN_PASSWORD} characters")
    if not roles:
        raise AccountError("give at least one role: " + ", ".join(r.value for r in Role))
    accounts = load(path)
    account = Account(name=name, roles=tuple(dict.fromkeys(roles)), password_hash=_hasher.hash(password))
    accounts[name] = account
    save(path, accounts)
    return account


def remove(path: Path, name: str) -> bool:
    accounts = load(path)
    if accounts.pop(name, None) is None:
        return False
    save(path, accounts)
    return True


def verify(path: Path, name: str, password: str) -> Account | None:
    """The account if the password is its own, else None (same work either way)."""
    account = load(path).get(name)
    try:
        _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return account
