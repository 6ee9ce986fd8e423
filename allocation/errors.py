"""Domain errors: each says what is wrong in the words of the person who asked."""

from __future__ import annotations


class AllocationError(Exception):
    """Base of every error the core raises on purpose. Never retried: the input must change."""


class UnknownSite(AllocationError):
    def __init__(self, site: str, known: list[str]) -> None:
        hint = f" (known sites: {', '.join(sorted(known))})" if known else ""
        super().__init__(f"unknown site {site!r}{hint}")
        self.site = site


class UnknownService(AllocationError):
    def __init__(self, identifier: str) -> None:
        super().__init__(f"no service {identifier!r}")
        self.identifier = identifier


class ServiceConflict(AllocationError):
    """The identifier exists with other immutable attributes, or the service is in the wrong state."""


class PoolExhausted(AllocationError):
    def __init__(self, pool: str, what: str) -> None:
        super().__init__(f"pool {pool!r} is exhausted: no {what} left")
        self.pool = pool


class NoPortAvailable(AllocationError):
    def __init__(self, site: str, bandwidth_mbps: int) -> None:
        super().__init__(
            f"no free customer port for {_speed(bandwidth_mbps)} at {site}: "
            "every port that supports this bandwidth is taken or none exists"
        )
        self.site = site
        self.bandwidth_mbps = bandwidth_mbps


class MissingDevice(AllocationError):
    def __init__(self, site: str, role: str, index: int) -> None:
        super().__init__(f"site {site} has no {role} device with index {index}")


class ChangeRefused(AllocationError):
    """A proposed change whose checks fail (``allocation/checks.py``): it stays open, nothing merges."""

    def __init__(self, message: str, violations: list[str]) -> None:
        super().__init__(message)
        self.violations = violations


class NotAsReviewed(AllocationError):
    """What reached main after a merge is not the plan the proposed change was opened for."""


class PermissionDenied(AllocationError):
    """The source of truth refused the account this action (Infrahub's permissions)."""


class Unauthenticated(AllocationError):
    """The source of truth no longer accepts the credentials (an expired or revoked token)."""


class PortTaken(Exception):
    """A port was claimed by someone else between plan and apply. Internal: the core re-plans."""


class InventoryUnavailable(Exception):
    """The source of truth cannot be reached. Transient: flows retry it; the CLI reports it."""


def _speed(mbps: int) -> str:
    return f"{mbps // 1000}G" if mbps >= 1000 and mbps % 1000 == 0 else f"{mbps}M"
