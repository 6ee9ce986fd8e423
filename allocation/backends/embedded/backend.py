"""The embedded inventory: a SQLite file that mirrors the Infrahub semantics the core relies on.

Branch-aware objects are rows keyed by branch; a read on a branch sees the branch's row, else
main's. Pool reservations and port claims are global. Each call is one ``BEGIN IMMEDIATE``
transaction, so several processes can share one file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from allocation import checks, policy, review
from allocation.backends.embedded import pools
from allocation.backends.embedded.bootstrap import load_records
from allocation.backends.embedded.objects import load_files
from allocation.errors import PoolExhausted, PortTaken, ServiceConflict, UnknownService, UnknownSite
from allocation.intent import Bandwidth, IpPackage, ServiceRequest, ServiceStatus
from allocation.model import (
    MAIN,
    Changes,
    ChangeState,
    Device,
    Gateway,
    Implementation,
    PlanningView,
    PoolUsage,
    Port,
    PortAssignment,
    PortUsage,
    ProposedChange,
    Service,
    Site,
    Vlan,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS site (shortname TEXT PRIMARY KEY, name TEXT NOT NULL, metro TEXT, country TEXT);
CREATE TABLE IF NOT EXISTS device (
    name TEXT PRIMARY KEY, site TEXT NOT NULL, role TEXT NOT NULL, idx INTEGER, status TEXT
);
CREATE INDEX IF NOT EXISTS device_site ON device (site);
CREATE TABLE IF NOT EXISTS port (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, name TEXT NOT NULL, site TEXT NOT NULL, speed INTEGER NOT NULL,
    role TEXT, status TEXT, device_role TEXT, device_index INTEGER, sort_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS port_site ON port (site, role, status, speed);
CREATE TABLE IF NOT EXISTS l2domain (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS loaded (kind TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS port_claim (
    port_id TEXT PRIMARY KEY, service TEXT NOT NULL, site TEXT NOT NULL, device_index INTEGER
);
CREATE INDEX IF NOT EXISTS port_claim_site ON port_claim (site, device_index);
CREATE TABLE IF NOT EXISTS service (
    identifier TEXT PRIMARY KEY, account TEXT NOT NULL, site TEXT NOT NULL, created TEXT NOT NULL,
    requested_by TEXT
);
CREATE TABLE IF NOT EXISTS service_state (
    identifier TEXT NOT NULL, branch TEXT NOT NULL, status TEXT NOT NULL, bandwidth TEXT NOT NULL,
    ip_package TEXT NOT NULL, PRIMARY KEY (identifier, branch)
);
CREATE INDEX IF NOT EXISTS service_state_branch ON service_state (branch);
CREATE INDEX IF NOT EXISTS service_site ON service (site, identifier);
CREATE TABLE IF NOT EXISTS resource (
    service TEXT NOT NULL, role TEXT NOT NULL, branch TEXT NOT NULL, holds TEXT, data TEXT,
    deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (service, role, branch)
);
CREATE INDEX IF NOT EXISTS resource_branch ON resource (branch);
CREATE TABLE IF NOT EXISTS branch (name TEXT PRIMARY KEY, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS proposed_change (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, branch TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT NOT NULL, state TEXT NOT NULL, created TEXT NOT NULL, decided_by TEXT
);
CREATE INDEX IF NOT EXISTS proposed_change_branch ON proposed_change (branch, seq);
"""

ROLES = ("vlan", "prefix", "port", "gateway")

# Columns added after files were first written: added to an older file when it is opened.
ADDED_COLUMNS = (("service", "requested_by", "TEXT"), ("proposed_change", "decided_by", "TEXT"))


def default_path() -> Path:
    return Path.home() / ".local" / "share" / "service-factory" / "inventory.sqlite3"


class EmbeddedInventory:
    """The inventory port on one SQLite file. Open one per process (or per task); close it after."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA foreign_keys = OFF")
        with self._write() as db:
            for statement in (SCHEMA + pools.SCHEMA).split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT OR IGNORE INTO branch VALUES (?, ?)", (MAIN, _now()))
            for table, column, kind in ADDED_COLUMNS:
                if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def close(self) -> None:
        self._db.close()

    def load(self, path: Path) -> dict[str, int]:
        """Load object files (idempotent). Returns how many objects of each kind the files hold."""
        records = load_files(path)
        with self._write() as db:
            counts = load_records(db, records)
            for kind, count in counts.items():
                db.execute("INSERT OR REPLACE INTO loaded VALUES (?, ?)", (kind, count))
        return counts

    # ------------------------------------------------------------------ services
    async def get_service(self, identifier: str, branch: str) -> Service | None:
        return self._service(self._db, identifier, branch)

    async def list_services(
        self,
        branch: str,
        *,
        status: ServiceStatus | None = None,
        site: str | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Service]:
        where, params = _service_filter(branch, status, site)
        rows = self._db.execute(
            f"SELECT s.identifier {where} ORDER BY s.identifier LIMIT ? OFFSET ?",
            (*params, -1 if limit is None else max(limit, 0), max(offset, 0)),
        ).fetchall()
        return [s for (identifier,) in rows if (s := self._service(self._db, identifier, branch))]

    async def count_services(
        self, branch: str, *, status: ServiceStatus | None = None, site: str | None = None
    ) -> int:
        where, params = _service_filter(branch, status, site)
        (count,) = self._db.execute(f"SELECT COUNT(*) {where}", params).fetchone()
        return int(count)

    async def create_service(self, request: ServiceRequest, *, requested_by: str | None = None) -> Service:
        with self._write() as db:
            row = db.execute(
                "SELECT account, site FROM service WHERE identifier = ?", (request.service_identifier,)
            ).fetchone()
            if row is not None:
                if tuple(row) != (request.account_reference, request.site):
                    raise ServiceConflict(
                        f"{request.service_identifier} already exists for account {row[0]} at {row[1]}"
                    )
            else:
                db.execute(
                    "INSERT INTO service (identifier, account, site, created, requested_by) VALUES (?, ?, ?, ?, ?)",
                    (
                        request.service_identifier,
                        request.account_reference,
                        request.site,
                        _now(),
                        requested_by,
                    ),
                )
                db.execute(
                    "INSERT INTO service_state VALUES (?, ?, ?, ?, ?)",
                    (
                        request.service_identifier,
                        MAIN,
                        ServiceStatus.DRAFT.value,
                        request.bandwidth.value,
                        request.ip_package.value,
                    ),
                )
            service = self._service(db, request.service_identifier, MAIN)
        assert service is not None
        return service

    async def withdraw_service(self, identifier: str) -> None:
        with self._write() as db:
            state = self._state(db, identifier, MAIN)
            if state is None:
                return
            if ServiceStatus.parse(state[0]) is not ServiceStatus.DRAFT:
                raise ServiceConflict(f"{identifier} is {state[0]}: only a draft can be withdrawn")
            prefix = policy.branch_name(identifier, "deliver")
            if db.execute(
                "SELECT 1 FROM proposed_change WHERE branch = ? OR branch LIKE ?", (prefix, prefix + "-%")
            ).fetchone():
                raise ServiceConflict(f"{identifier} has a proposed change: it is not withdrawn")
            for (holds,) in db.execute(
                "SELECT holds FROM resource WHERE service = ? AND holds IS NOT NULL", (identifier,)
            ).fetchall():
                self._free(db, holds)
            db.execute("DELETE FROM resource WHERE service = ?", (identifier,))
            db.execute("DELETE FROM service_state WHERE identifier = ?", (identifier,))
            db.execute("DELETE FROM service WHERE identifier = ?", (identifier,))
            db.execute("DELETE FROM branch WHERE name = ? OR name LIKE ?", (prefix, prefix + "-%"))

    async def update_service(
        self,
        identifier: str,
        branch: str,
        *,
        status: ServiceStatus | None = None,
        bandwidth: Bandwidth | None = None,
        ip_package: IpPackage | None = None,
    ) -> None:
        with self._write() as db:
            self._update_state(db, identifier, branch, status, bandwidth, ip_package)

    def _update_state(
        self,
        db: sqlite3.Connection,
        identifier: str,
        branch: str,
        status: ServiceStatus | None,
        bandwidth: Bandwidth | None,
        ip_package: IpPackage | None,
    ) -> None:
        state = self._state(db, identifier, branch)
        if state is None:
            raise UnknownService(identifier)
        new = (
            (status or ServiceStatus.parse(state[0])).value,
            (bandwidth or Bandwidth(state[1])).value,
            (ip_package or IpPackage(state[2])).value,
        )
        db.execute("INSERT OR REPLACE INTO service_state VALUES (?, ?, ?, ?, ?)", (identifier, branch, *new))

    def _state(self, db: sqlite3.Connection, identifier: str, branch: str) -> tuple[str, str, str] | None:
        row = db.execute(
            "SELECT status, bandwidth, ip_package FROM service_state WHERE identifier = ? AND branch IN (?, ?) "
            "ORDER BY branch = ? LIMIT 1",
            (identifier, branch, MAIN, MAIN),
        ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def _service(self, db: sqlite3.Connection, identifier: str, branch: str) -> Service | None:
        row = db.execute(
            "SELECT account, site, requested_by FROM service WHERE identifier = ?", (identifier,)
        ).fetchone()
        state = self._state(db, identifier, branch)
        if row is None or state is None:
            return None
        return Service(
            service_identifier=identifier,
            account_reference=row[0],
            site=row[1],
            status=ServiceStatus.parse(state[0]),
            bandwidth=Bandwidth(state[1]),
            ip_package=IpPackage(state[2]),
            implementation=self._implementation(db, identifier, branch),
            requested_by=row[2],
        )

    def _resources(self, db: sqlite3.Connection, identifier: str, branch: str) -> dict[str, dict[str, Any]]:
        rows = db.execute(
            "SELECT role, branch, data, deleted FROM resource WHERE service = ? AND branch IN (?, ?)",
            (identifier, branch, MAIN),
        ).fetchall()
        chosen: dict[str, tuple[str, str, int]] = {}
        for role, row_branch, data, deleted in rows:
            if role not in chosen or row_branch != MAIN:
                chosen[role] = (row_branch, data, deleted)
        return {role: json.loads(data) for role, (_, data, deleted) in chosen.items() if not deleted}

    def _implementation(self, db: sqlite3.Connection, identifier: str, branch: str) -> Implementation:
        found = self._resources(db, identifier, branch)
        return Implementation(
            vlan=Vlan(**found["vlan"]) if "vlan" in found else None,
            prefix=IPv4Network(found["prefix"]["prefix"]) if "prefix" in found else None,
            port=PortAssignment(port=Port(**found["port"]["port"]), vlan_id=found["port"]["vlan_id"])
            if "port" in found
            else None,
            gateway=Gateway(**found["gateway"]) if "gateway" in found else None,
        )

    # ------------------------------------------------------------------ topology
    async def list_sites(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT shortname FROM site ORDER BY shortname")]

    async def get_site(self, shortname: str) -> Site:
        site = self._site(self._db, shortname)
        if site is None:
            known = [r[0] for r in self._db.execute("SELECT shortname FROM site")]
            raise UnknownSite(shortname, known)
        return site

    def _site(self, db: sqlite3.Connection, shortname: str) -> Site | None:
        row = db.execute("SELECT shortname, name FROM site WHERE shortname = ?", (shortname,)).fetchone()
        if row is None:
            return None
        devices = tuple(
            Device(name=n, role=r, index=i)
            for n, r, i in db.execute(
                "SELECT name, role, idx FROM device WHERE site = ? ORDER BY name", (shortname,)
            )
        )
        l2domains = {r[0] for r in db.execute("SELECT name FROM l2domain")}
        vlan_pool, prefix_pool, l2domain = policy.site_pools(shortname, pools.pool_names(db), l2domains)
        return Site(
            shortname=row[0],
            name=row[1],
            devices=devices,
            vlan_pool=vlan_pool,
            prefix_pool=prefix_pool,
            l2domain=l2domain,
        )

    async def free_ports(self, site: str, min_speed_mbps: int) -> list[Port]:
        rows = self._db.execute(
            """
            SELECT id, device, name, speed, device_index FROM (
                SELECT p.*, ROW_NUMBER() OVER (PARTITION BY p.device, p.speed ORDER BY p.sort_key) AS rank
                  FROM port p LEFT JOIN port_claim c ON c.port_id = p.id
                 WHERE p.site = ? AND p.role = ? AND p.status = 'free' AND p.speed >= ?
                   AND p.device_role = 'core' AND c.port_id IS NULL
            ) WHERE rank = 1
            """,
            (site, policy.CUSTOMER_ROLE, min_speed_mbps),
        ).fetchall()
        return [Port(id=i, device=d, name=n, speed_mbps=s, device_index=x) for i, d, n, s, x in rows]

    async def switch_load(self, site: str) -> dict[int, int]:
        rows = self._db.execute(
            "SELECT device_index, COUNT(*) FROM port_claim WHERE site = ? GROUP BY device_index", (site,)
        ).fetchall()
        return {int(index): int(count) for index, count in rows}

    async def planning_view(
        self, identifier: str, branch: str, *, site: str | None = None, allocating: bool = True
    ) -> PlanningView:
        service = self._service(self._db, identifier, branch)
        if site is None:
            if service is None:
                raise UnknownService(identifier)
            site = service.site
        found = await self.get_site(site)
        rows = self._db.execute(
            "SELECT seq, branch, name, description, state, created, decided_by FROM proposed_change "
            "WHERE branch LIKE ? ESCAPE '\\' ORDER BY seq",
            (policy.branch_prefix(identifier).replace("_", "\\_").replace("%", "\\%") + "%",),
        ).fetchall()
        changes = tuple(_change_from_row(r) for r in rows if policy.is_service_branch(identifier, str(r[1])))
        if not allocating:
            return PlanningView(service=service, site=found, changes=changes)
        return PlanningView(
            service=service,
            site=found,
            free_ports=tuple(await self.free_ports(site, 0)),
            switch_load=await self.switch_load(site),
            room=pools.room(self._db, [found.vlan_pool, found.prefix_pool]),
            allocating=True,
            changes=changes,
        )

    async def branch_off(
        self,
        identifier: str,
        branch: str,
        *,
        status: ServiceStatus | None = None,
        bandwidth: Bandwidth | None = None,
        ip_package: IpPackage | None = None,
    ) -> None:
        with self._write() as db:
            if status is not None:
                self._update_state(db, identifier, MAIN, status, None, None)
            db.execute("INSERT OR IGNORE INTO branch VALUES (?, ?)", (branch, _now()))
            if bandwidth is not None or ip_package is not None:
                self._update_state(db, identifier, branch, None, bandwidth, ip_package)

    # ------------------------------------------------------------------ pools and usage
    async def pool_has_room(self, pool: str, prefix_length: int | None = None) -> bool:
        return pools.has_room(self._db, pool, prefix_length)

    async def pool_usage(self) -> list[PoolUsage]:
        return [PoolUsage(name=n, kind=k, used=u, total=t) for n, k, u, t in pools.usage(self._db)]

    async def port_usage(self) -> list[PortUsage]:
        rows = self._db.execute(
            """
            SELECT p.site, p.device, p.speed, SUM(c.port_id IS NULL), SUM(c.port_id IS NOT NULL) FROM port p
              LEFT JOIN port_claim c ON c.port_id = p.id
             WHERE p.role = ? AND p.device_role = 'core' AND p.status = 'free'
             GROUP BY p.site, p.device, p.speed ORDER BY p.site, p.device, p.speed
            """,
            (policy.CUSTOMER_ROLE,),
        ).fetchall()
        return [PortUsage(site=a, device=b, speed_mbps=c, free=d, used=e) for a, b, c, d, e in rows]

    # ------------------------------------------------------------------ implementation objects
    async def ensure_vlan(self, service: str, *, pool: str, l2domain: str, branch: str) -> Vlan:
        with self._write() as db:
            return self._ensure_vlan(db, service, pool, l2domain, branch)

    async def ensure_prefix(
        self, service: str, *, pool: str, length: int, vlan: Vlan, branch: str
    ) -> IPv4Network:
        with self._write() as db:
            return self._ensure_prefix(db, service, pool, length, vlan, branch)

    async def claim_port(self, service: str, *, port: Port, vlan: Vlan, branch: str) -> PortAssignment:
        with self._write() as db:
            return self._claim_port(db, service, port, vlan, branch)

    async def ensure_gateway(
        self, service: str, *, device: str, vlan: Vlan, address: IPv4Interface, branch: str
    ) -> Gateway:
        with self._write() as db:
            return self._ensure_gateway(db, service, device, vlan, address, branch)

    def _ensure_vlan(
        self, db: sqlite3.Connection, service: str, pool: str, l2domain: str, branch: str
    ) -> Vlan:
        current = self._resources(db, service, branch).get("vlan")
        if current is not None:
            return Vlan(**current)
        key = policy.allocation_key(service, "vlan")
        vlan_id = pools.allocate_number(db, pool, key)
        if vlan_id is None:
            raise PoolExhausted(pool, "VLAN ID")
        vlan = Vlan(vlan_id=vlan_id, name=policy.vlan_name(service), l2domain=l2domain)
        self._put(db, service, "vlan", branch, _holds(pool, key), vlan.model_dump(mode="json"))
        return vlan

    def _ensure_prefix(
        self, db: sqlite3.Connection, service: str, pool: str, length: int, vlan: Vlan, branch: str
    ) -> IPv4Network:
        current = self._resources(db, service, branch).get("prefix")
        if current is not None:
            prefix = IPv4Network(current["prefix"])
            if prefix.prefixlen == length:
                return prefix
            raise ServiceConflict(f"{service} holds {prefix}; release it before asking for a /{length}")
        key = policy.allocation_key(service, "prefix", length)
        allocated = pools.allocate_prefix(db, pool, key, length)
        if allocated is None:
            raise PoolExhausted(pool, f"/{length} prefix")
        self._put(
            db,
            service,
            "prefix",
            branch,
            _holds(pool, key),
            {"prefix": str(allocated), "vlan_id": vlan.vlan_id},
        )
        return allocated

    def _claim_port(
        self, db: sqlite3.Connection, service: str, port: Port, vlan: Vlan, branch: str
    ) -> PortAssignment:
        current = self._resources(db, service, branch).get("port")
        if current is not None and current["port"]["id"] != port.id:
            raise ServiceConflict(f"{service} holds {current['port']['name']}; release it before moving")
        holder = db.execute("SELECT service FROM port_claim WHERE port_id = ?", (port.id,)).fetchone()
        if holder is not None and holder[0] != service:
            raise PortTaken(port.id)
        if holder is None:
            db.execute(
                "INSERT INTO port_claim VALUES (?, ?, (SELECT site FROM port WHERE id = ?), ?)",
                (port.id, service, port.id, port.device_index),
            )
        assignment = PortAssignment(port=port, vlan_id=vlan.vlan_id)
        if current is None or current.get("vlan_id") != vlan.vlan_id:
            self._put(db, service, "port", branch, f"port:{port.id}", assignment.model_dump(mode="json"))
        return assignment

    def _ensure_gateway(
        self,
        db: sqlite3.Connection,
        service: str,
        device: str,
        vlan: Vlan,
        address: IPv4Interface,
        branch: str,
    ) -> Gateway:
        gateway = Gateway(
            device=device,
            interface=policy.gateway_interface_name(vlan.vlan_id),
            address=address,
            vlan_id=vlan.vlan_id,
        )
        current = self._resources(db, service, branch).get("gateway")
        if current is None or Gateway(**current) != gateway:
            self._put(db, service, "gateway", branch, None, gateway.model_dump(mode="json"))
        return gateway

    async def apply_changes(
        self, identifier: str, changes: Changes, *, branch: str, view: PlanningView | None = None
    ) -> Implementation:
        """All of a step in one transaction: a lost port race rolls the whole step back."""
        with self._write() as db:
            if self._state(db, identifier, branch) is None:
                raise UnknownService(identifier)
            for role in ("gateway", "port", "prefix", "vlan"):
                if role in changes.release:
                    self._release_in(db, identifier, role, branch)
            held = self._implementation(db, identifier, branch)
            vlan, prefix = held.vlan, held.prefix
            if changes.vlan is not None:
                vlan = self._ensure_vlan(db, identifier, changes.vlan.pool, changes.vlan.l2domain, branch)
            if (changes.prefix or changes.port or changes.gateway) and vlan is None:
                raise ServiceConflict(f"{identifier} has no VLAN on {branch}")
            assert vlan is not None or not (changes.prefix or changes.port or changes.gateway)
            if changes.prefix is not None and vlan is not None:
                prefix = self._ensure_prefix(
                    db, identifier, changes.prefix.pool, changes.prefix.length, vlan, branch
                )
            if changes.port is not None and vlan is not None:
                self._claim_port(db, identifier, changes.port, vlan, branch)
            if changes.gateway is not None and vlan is not None:
                if prefix is None:
                    raise ServiceConflict(f"{identifier} has no prefix on {branch}")
                self._ensure_gateway(
                    db, identifier, changes.gateway, vlan, policy.gateway_address(prefix), branch
                )
            return self._implementation(db, identifier, branch)

    async def release_vlan(self, service: str, *, branch: str) -> None:
        self._release(service, "vlan", branch)

    async def release_prefix(self, service: str, *, branch: str) -> None:
        self._release(service, "prefix", branch)

    async def release_port(self, service: str, *, branch: str) -> None:
        self._release(service, "port", branch)

    async def release_gateway(self, service: str, *, branch: str) -> None:
        self._release(service, "gateway", branch)

    async def discard_changes(self, service: str, *, branch: str) -> None:
        if branch == MAIN:
            return
        with self._write() as db:
            for role, holds in db.execute(
                "SELECT role, holds FROM resource WHERE service = ? AND branch = ?", (service, branch)
            ).fetchall():
                if holds and holds != self._main_holds(db, service, role):
                    self._free(db, holds)
            db.execute("DELETE FROM resource WHERE service = ? AND branch = ?", (service, branch))
            db.execute("DELETE FROM service_state WHERE identifier = ? AND branch = ?", (service, branch))

    def _put(
        self,
        db: sqlite3.Connection,
        service: str,
        role: str,
        branch: str,
        holds: str | None,
        data: dict[str, Any],
    ) -> None:
        db.execute(
            "INSERT OR REPLACE INTO resource VALUES (?, ?, ?, ?, ?, 0)",
            (service, role, branch, holds, json.dumps(data, sort_keys=True)),
        )

    def _release(self, service: str, role: str, branch: str) -> None:
        with self._write() as db:
            self._release_in(db, service, role, branch)

    def _release_in(self, db: sqlite3.Connection, service: str, role: str, branch: str) -> None:
        row = db.execute(
            "SELECT holds, deleted FROM resource WHERE service = ? AND role = ? AND branch = ?",
            (service, role, branch),
        ).fetchone()
        main_holds = self._main_holds(db, service, role) if branch != MAIN else None
        if row is not None and not row[1] and row[0] and row[0] != main_holds:
            self._free(db, row[0])  # taken on this branch: back to the pool at once
        exists_on_main = (
            branch != MAIN
            and db.execute(
                "SELECT 1 FROM resource WHERE service = ? AND role = ? AND branch = ? AND deleted = 0",
                (service, role, MAIN),
            ).fetchone()
        )
        if exists_on_main:
            db.execute(
                "INSERT OR REPLACE INTO resource VALUES (?, ?, ?, NULL, NULL, 1)", (service, role, branch)
            )
        else:
            db.execute(
                "DELETE FROM resource WHERE service = ? AND role = ? AND branch = ?", (service, role, branch)
            )

    def _main_holds(self, db: sqlite3.Connection, service: str, role: str) -> str | None:
        row = db.execute(
            "SELECT holds FROM resource WHERE service = ? AND role = ? AND branch = ? AND deleted = 0",
            (service, role, MAIN),
        ).fetchone()
        return row[0] if row else None

    def _free(self, db: sqlite3.Connection, holds: str) -> None:
        if holds.startswith("port:"):
            db.execute("DELETE FROM port_claim WHERE port_id = ?", (holds.removeprefix("port:"),))
        else:
            pool, key = json.loads(holds)
            pools.release(db, pool, key)

    # ------------------------------------------------------------------ branches and proposed changes
    async def create_branch(self, name: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO branch VALUES (?, ?)", (name, _now()))

    async def open_proposed_change(
        self,
        branch: str,
        title: str,
        description: str,
        *,
        known: Sequence[ProposedChange] | None = None,
    ) -> ProposedChange:
        with self._write() as db:  # reads what the branch has inside the transaction: ``known`` unused
            if not db.execute("SELECT 1 FROM branch WHERE name = ?", (branch,)).fetchone():
                raise ServiceConflict(f"no branch {branch!r}")
            current = self._change(db, branch)
            if current is None or current.state is not ChangeState.OPEN:
                db.execute(
                    "INSERT INTO proposed_change (branch, name, description, state, created) VALUES (?, ?, ?, ?, ?)",
                    (branch, title, description, ChangeState.OPEN.value, _now()),
                )
            elif (current.name, current.description) != (title, description):  # re-opened: a fresh plan
                db.execute(
                    "UPDATE proposed_change SET name = ?, description = ? WHERE seq = ?",
                    (title, description, current.id),
                )
            change = self._change(db, branch)
        assert change is not None
        return change

    async def get_proposed_change(self, branch: str) -> ProposedChange | None:
        return self._change(self._db, branch)

    async def merge_proposed_change(self, change_id: str, *, by: str | None = None) -> ProposedChange:
        with self._write() as db:
            change = self._change_by_id(db, change_id)
            if change.state is ChangeState.CLOSED:
                raise ServiceConflict(f"proposed change {change_id} is closed and cannot be merged")
            if change.state is ChangeState.OPEN:
                violations = self._judge(db, change)
                if violations:
                    raise checks.refusal(change.id, change.branch, [v.message for v in violations])
                self._merge_branch(db, change.branch)
                db.execute(
                    "UPDATE proposed_change SET state = ?, decided_by = ? WHERE seq = ?",
                    (ChangeState.MERGED.value, by, change_id),
                )
            return self._change_by_id(db, change_id)

    async def close_proposed_change(self, change_id: str, *, by: str | None = None) -> ProposedChange:
        with self._write() as db:
            change = self._change_by_id(db, change_id)
            if change.state is ChangeState.MERGED:
                raise ServiceConflict(f"proposed change {change_id} is merged and cannot be closed")
            if change.state is ChangeState.OPEN:
                db.execute(
                    "UPDATE proposed_change SET state = ?, decided_by = ? WHERE seq = ?",
                    (ChangeState.CLOSED.value, by, change_id),
                )
            return self._change_by_id(db, change_id)

    def _judge(self, db: sqlite3.Connection, change: ProposedChange) -> list[checks.Violation]:
        """The checks Infrahub runs in a proposed change's pipeline, run on the merge: the services the
        branch touches (its rows) and those its recorded plan names, against the rules and the plan."""
        identifiers = {
            r[0]
            for r in db.execute(
                "SELECT service FROM resource WHERE branch = ? UNION SELECT identifier FROM service_state "
                "WHERE branch = ?",
                (change.branch, change.branch),
            )
        }
        recorded = review.parse(change.description)
        identifiers |= set(recorded.states) if recorded is not None else set()
        touched = {sid: self._service(db, sid, change.branch) for sid in sorted(identifiers)}
        sites = {
            shortname: site
            for shortname in {s.site for s in touched.values() if s is not None}
            if (site := self._site(db, shortname)) is not None
        }
        ports = [s.implementation.port.port.id for s in touched.values() if s and s.implementation.port]
        holders = {
            port: frozenset({service})
            for port, service in db.execute(
                f"SELECT port_id, service FROM port_claim WHERE port_id IN ({','.join('?' * len(ports))})",
                ports,
            )
        }
        facts = checks.Facts(
            sites=sites,
            pools={site.prefix_pool: pools.extent(db, site.prefix_pool) for site in sites.values()},
            port_holders=holders,
        ).holding(s for s in touched.values() if s is not None)
        return checks.judge(change.description, touched, facts)

    def _merge_branch(self, db: sqlite3.Connection, branch: str) -> None:
        for service, role, holds, data, deleted in db.execute(
            "SELECT service, role, holds, data, deleted FROM resource WHERE branch = ?", (branch,)
        ).fetchall():
            main_holds = self._main_holds(db, service, role)
            if main_holds and (deleted or holds != main_holds):
                self._free(db, main_holds)
            if deleted:
                db.execute(
                    "DELETE FROM resource WHERE service = ? AND role = ? AND branch = ?",
                    (service, role, MAIN),
                )
            else:
                db.execute(
                    "INSERT OR REPLACE INTO resource VALUES (?, ?, ?, ?, ?, 0)",
                    (service, role, MAIN, holds, data),
                )
        db.execute("DELETE FROM resource WHERE branch = ?", (branch,))
        db.execute(
            "INSERT OR REPLACE INTO service_state SELECT identifier, ?, status, bandwidth, ip_package "
            "FROM service_state WHERE branch = ?",
            (MAIN, branch),
        )
        db.execute("DELETE FROM service_state WHERE branch = ?", (branch,))

    def _change(self, db: sqlite3.Connection, branch: str) -> ProposedChange | None:
        row = db.execute(
            "SELECT seq, branch, name, description, state, created, decided_by FROM proposed_change WHERE branch = ? "
            "ORDER BY seq DESC LIMIT 1",
            (branch,),
        ).fetchone()
        return _change_from_row(row) if row else None

    def _change_by_id(self, db: sqlite3.Connection, change_id: str) -> ProposedChange:
        row = db.execute(
            "SELECT seq, branch, name, description, state, created, decided_by FROM proposed_change WHERE seq = ?",
            (change_id,),
        ).fetchone()
        if row is None:
            raise ServiceConflict(f"no proposed change {change_id!r}")
        return _change_from_row(row)

    # ------------------------------------------------------------------ reconciliation support
    async def leaks(self) -> list[str]:
        """Reservations and claims that no service object holds on any branch: resources whose owner is gone."""
        held = {
            r[0]
            for r in self._db.execute("SELECT holds FROM resource WHERE holds IS NOT NULL AND deleted = 0")
        }
        found = [
            f"pool {pool!r}: {identifier} -> {value}"
            for pool, identifier, value in self._db.execute("SELECT pool, identifier, value FROM reservation")
            if _holds(pool, identifier) not in held
        ]
        found += [
            f"port {port_id} claimed by {service}"
            for port_id, service in self._db.execute("SELECT port_id, service FROM port_claim")
            if f"port:{port_id}" not in held
        ]
        return found


def _service_filter(
    branch: str, status: ServiceStatus | None, site: str | None
) -> tuple[str, tuple[str, ...]]:
    """FROM and WHERE of the services as a branch sees them: the branch's own state row if it has
    one, else main's (on main, only main's: one join less)."""
    # CROSS JOIN keeps service as the outer loop: its identifier order serves ORDER BY and LIMIT.
    source = "FROM service s CROSS JOIN service_state m ON m.identifier = s.identifier AND m.branch = 'main'"
    params: list[str] = []
    current = "m.status"
    if branch != MAIN:
        source += " LEFT JOIN service_state b ON b.identifier = s.identifier AND b.branch = ?"
        params.append(branch)
        current = "COALESCE(b.status, m.status)"
    clauses = []
    if status is not None:
        clauses.append(f"{current} = ?")
        params.append(status.value)
    if site is not None:
        clauses.append("s.site = ?")
        params.append(site)
    return source + (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _holds(pool: str, key: str) -> str:
    return json.dumps([pool, key])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _change_from_row(row: tuple[Any, ...]) -> ProposedChange:
    seq, branch, name, description, state, created, decided_by = row
    return ProposedChange(
        id=str(seq),
        branch=branch,
        name=name,
        description=description,
        state=ChangeState(state),
        created_at=datetime.fromisoformat(created),
        decided_by=decided_by,
    )
