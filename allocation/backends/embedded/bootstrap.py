"""Turn object-file records into the embedded tables. Kinds the core does not use are counted only."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from ipaddress import IPv4Network

from allocation.backends.embedded import pools
from allocation.backends.embedded.objects import ObjectRecord, reference, references


class BootstrapError(ValueError):
    pass


def load_records(db: sqlite3.Connection, records: list[ObjectRecord]) -> dict[str, int]:
    counts = Counter(r.kind for r in records)
    by_kind: dict[str, list[ObjectRecord]] = {}
    for record in records:
        by_kind.setdefault(record.kind, []).append(record)

    for record in by_kind.get("LocationSite", []):
        _site(db, record)
    for record in by_kind.get("IpamL2Domain", []):
        db.execute("INSERT OR IGNORE INTO l2domain VALUES (?)", (_required(record, "name"),))
    devices: dict[str, ObjectRecord] = {}
    for record in by_kind.get("DcimDevice", []):
        name = _required(record, "name")
        if name in devices:  # a later file upserts the device (08_device_groups.yml): what it sets wins
            devices[name].values.update(record.values)
        else:
            devices[name] = record
    if devices:
        counts["DcimDevice"] = len(devices)
    for record in devices.values():
        _device(db, record)
    for kind in ("DcimInterfaceL2", "DcimInterfaceL3"):
        for record in by_kind.get(kind, []):
            _interface(db, record, devices)
    for record in by_kind.get("CoreNumberPool", []):
        pools.create_number_pool(
            db,
            _required(record, "name"),
            int(_required(record, "start_range")),
            int(_required(record, "end_range")),
        )
    for record in by_kind.get("CoreIPPrefixPool", []):
        resources = [IPv4Network(r) for r in references(record.values.get("resources"))]
        if not resources:
            raise BootstrapError(
                f"{record.source}: prefix pool {record.values.get('name')!r} has no resources"
            )
        pools.create_prefix_pool(
            db, _required(record, "name"), int(record.values.get("default_prefix_length") or 29), resources
        )
    return dict(counts)


def _site(db: sqlite3.Connection, record: ObjectRecord) -> None:
    metro = record.parent if record.parent and record.parent.kind == "LocationMetro" else None
    country = metro.parent if metro and metro.parent and metro.parent.kind == "LocationCountry" else None
    shortname = _required(record, "shortname")
    db.execute(
        "INSERT OR REPLACE INTO site VALUES (?, ?, ?, ?)",
        (
            shortname,
            record.values.get("name") or shortname,
            metro.values.get("name") if metro else record.ref("parent"),
            country.values.get("name") if country else None,
        ),
    )


def _device(db: sqlite3.Connection, record: ObjectRecord) -> None:
    site = record.ref("location")
    if site is None:
        raise BootstrapError(f"{record.source}: device {record.values.get('name')!r} has no location")
    index = record.values.get("index")
    db.execute(
        "INSERT OR REPLACE INTO device VALUES (?, ?, ?, ?, ?)",
        (
            _required(record, "name"),
            _site_shortname(db, site),
            _required(record, "role"),
            int(index) if index is not None else None,
            record.values.get("status"),
        ),
    )


def _interface(db: sqlite3.Connection, record: ObjectRecord, devices: dict[str, ObjectRecord]) -> None:
    device_name = record.parent.values.get("name") if record.parent else _device_ref(record)
    if device_name is None or device_name not in devices:
        raise BootstrapError(f"{record.source}: interface {record.values.get('name')!r} has no known device")
    device = devices[device_name]
    name = _required(record, "name")
    index = device.values.get("index")
    db.execute(
        "INSERT OR REPLACE INTO port VALUES (?, ?, ?, (SELECT site FROM device WHERE name = ?), ?, ?, ?, ?, ?, ?)",
        (
            f"{device_name}:{name}",
            device_name,
            name,
            device_name,
            int(record.values.get("speed") or 0),
            record.values.get("role"),
            record.values.get("status"),
            device.values.get("role"),
            int(index) if index is not None else None,
            _sort_key(name),
        ),
    )


def _sort_key(name: str) -> str:
    """Natural order as plain text order: Ethernet9 -> Ethernet00000009, before Ethernet00000010."""
    return re.sub(r"\d+", lambda m: m.group().zfill(8), name)


def _device_ref(record: ObjectRecord) -> str | None:
    value = record.values.get("device")
    if isinstance(value, list) and value:
        return str(value[0])
    return reference(value)


def _site_shortname(db: sqlite3.Connection, ref: str) -> str:
    row = db.execute("SELECT shortname FROM site WHERE shortname = ? OR name = ?", (ref, ref)).fetchone()
    if row is None:
        raise BootstrapError(f"unknown site {ref!r} referenced by a device")
    return str(row[0])


def _required(record: ObjectRecord, name: str) -> str:
    value = record.values.get(name)
    if value is None or value == "":
        raise BootstrapError(f"{record.source}: a {record.kind} has no {name!r}")
    return str(value)
