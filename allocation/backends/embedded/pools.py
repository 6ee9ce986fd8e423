"""Resource pools on SQLite with a cost per allocation that does not grow with the pool's use.

Number pools keep a list of free intervals (lowest number first). Prefix pools keep a buddy
free-list: the smallest free block that fits is split down to the requested length, and a
released block merges back with its free buddy, so the pool never fragments for good. A block never
grows past the resource it came from: like Infrahub, a pool allocates inside one of its resources,
so two adjacent resources do not make room for a prefix that spans both.
"""

from __future__ import annotations

import itertools
import sqlite3
from ipaddress import IPv4Network, collapse_addresses

SCHEMA = """
CREATE TABLE IF NOT EXISTS number_pool (name TEXT PRIMARY KEY, lo INTEGER NOT NULL, hi INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS number_free (
    pool TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL, PRIMARY KEY (pool, lo)
);
CREATE INDEX IF NOT EXISTS number_free_hi ON number_free (pool, hi);
CREATE TABLE IF NOT EXISTS prefix_pool (
    name TEXT PRIMARY KEY, default_length INTEGER NOT NULL, total INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS prefix_free (
    pool TEXT NOT NULL, length INTEGER NOT NULL, network INTEGER NOT NULL, PRIMARY KEY (pool, length, network)
);
CREATE TABLE IF NOT EXISTS prefix_resource (
    pool TEXT NOT NULL, length INTEGER NOT NULL, network INTEGER NOT NULL, PRIMARY KEY (pool, network)
);
CREATE TABLE IF NOT EXISTS reservation (
    pool TEXT NOT NULL, identifier TEXT NOT NULL, value TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (pool, identifier)
);
"""


def create_number_pool(db: sqlite3.Connection, name: str, lo: int, hi: int) -> None:
    if db.execute("SELECT 1 FROM number_pool WHERE name = ?", (name,)).fetchone():
        return
    if lo > hi:
        raise ValueError(f"number pool {name!r}: start {lo} is above end {hi}")
    db.execute("INSERT INTO number_pool VALUES (?, ?, ?)", (name, lo, hi))
    db.execute("INSERT INTO number_free VALUES (?, ?, ?)", (name, lo, hi))


def create_prefix_pool(
    db: sqlite3.Connection, name: str, default_length: int, resources: list[IPv4Network]
) -> None:
    for a, b in itertools.combinations(resources, 2):
        if a.overlaps(b):
            raise ValueError(f"prefix pool {name!r}: resources {a} and {b} overlap")
    if db.execute("SELECT 1 FROM prefix_pool WHERE name = ?", (name,)).fetchone():
        if not db.execute("SELECT 1 FROM prefix_resource WHERE pool = ? LIMIT 1", (name,)).fetchone():
            _record_resources(db, name, resources)  # a file written before resources were recorded
        return
    total = sum(r.num_addresses for r in resources)
    db.execute("INSERT INTO prefix_pool VALUES (?, ?, ?)", (name, default_length, total))
    _record_resources(db, name, resources)
    for resource in resources:
        db.execute(
            "INSERT INTO prefix_free VALUES (?, ?, ?)",
            (name, resource.prefixlen, int(resource.network_address)),
        )


def _record_resources(db: sqlite3.Connection, name: str, resources: list[IPv4Network]) -> None:
    for resource in resources:
        db.execute(
            "INSERT INTO prefix_resource VALUES (?, ?, ?)",
            (name, resource.prefixlen, int(resource.network_address)),
        )


def pool_names(db: sqlite3.Connection) -> set[str]:
    rows = db.execute("SELECT name FROM number_pool UNION SELECT name FROM prefix_pool").fetchall()
    return {r[0] for r in rows}


def has_room(db: sqlite3.Connection, pool: str, prefix_length: int | None) -> bool:
    if prefix_length is None:
        return db.execute("SELECT 1 FROM number_free WHERE pool = ? LIMIT 1", (pool,)).fetchone() is not None
    row = db.execute(
        "SELECT 1 FROM prefix_free WHERE pool = ? AND length <= ? LIMIT 1", (pool, prefix_length)
    ).fetchone()
    return row is not None


def reserved(db: sqlite3.Connection, pool: str, identifier: str) -> str | None:
    row = db.execute(
        "SELECT value FROM reservation WHERE pool = ? AND identifier = ?", (pool, identifier)
    ).fetchone()
    return row[0] if row else None


def allocate_number(db: sqlite3.Connection, pool: str, identifier: str) -> int | None:
    """The reserved number of ``identifier``, or the lowest free one. None when the pool is full."""
    existing = reserved(db, pool, identifier)
    if existing is not None:
        return int(existing)
    row = db.execute("SELECT lo, hi FROM number_free WHERE pool = ? ORDER BY lo LIMIT 1", (pool,)).fetchone()
    if row is None:
        return None
    lo, hi = row
    db.execute("DELETE FROM number_free WHERE pool = ? AND lo = ?", (pool, lo))
    if lo < hi:
        db.execute("INSERT INTO number_free VALUES (?, ?, ?)", (pool, lo + 1, hi))
    db.execute("INSERT INTO reservation VALUES (?, ?, ?, 1)", (pool, identifier, str(lo)))
    return int(lo)


def allocate_prefix(db: sqlite3.Connection, pool: str, identifier: str, length: int) -> IPv4Network | None:
    """The reserved prefix of ``identifier``, or the best-fitting free block split down to ``length``."""
    existing = reserved(db, pool, identifier)
    if existing is not None:
        return IPv4Network(existing)
    row = db.execute(
        "SELECT length, network FROM prefix_free WHERE pool = ? AND length <= ? "
        "ORDER BY length DESC, network LIMIT 1",
        (pool, length),
    ).fetchone()
    if row is None:
        return None
    block_length, network = row
    db.execute(
        "DELETE FROM prefix_free WHERE pool = ? AND length = ? AND network = ?", (pool, block_length, network)
    )
    while block_length < length:  # keep the lower half, free the upper half
        block_length += 1
        db.execute(
            "INSERT INTO prefix_free VALUES (?, ?, ?)",
            (pool, block_length, network + 2 ** (32 - block_length)),
        )
    prefix = IPv4Network((network, length))
    db.execute(
        "INSERT INTO reservation VALUES (?, ?, ?, ?)", (pool, identifier, str(prefix), prefix.num_addresses)
    )
    return prefix


def release(db: sqlite3.Connection, pool: str, identifier: str) -> None:
    """Give a reservation back to its pool. Nothing happens if it was already given back."""
    value = reserved(db, pool, identifier)
    if value is None:
        return
    db.execute("DELETE FROM reservation WHERE pool = ? AND identifier = ?", (pool, identifier))
    if "/" in value:
        _free_prefix(db, pool, IPv4Network(value))
    else:
        _free_number(db, pool, int(value))


def _free_number(db: sqlite3.Connection, pool: str, number: int) -> None:
    lo = hi = number
    below = db.execute("SELECT lo FROM number_free WHERE pool = ? AND hi = ?", (pool, number - 1)).fetchone()
    if below:
        lo = below[0]
        db.execute("DELETE FROM number_free WHERE pool = ? AND lo = ?", (pool, lo))
    above = db.execute("SELECT hi FROM number_free WHERE pool = ? AND lo = ?", (pool, number + 1)).fetchone()
    if above:
        hi = above[0]
        db.execute("DELETE FROM number_free WHERE pool = ? AND lo = ?", (pool, number + 1))
    db.execute("INSERT INTO number_free VALUES (?, ?, ?)", (pool, lo, hi))


def _free_prefix(db: sqlite3.Connection, pool: str, prefix: IPv4Network) -> None:
    length, network = prefix.prefixlen, int(prefix.network_address)
    # The resource holding the block: the one starting last at or below it (resources are disjoint).
    (resource_length,) = db.execute(
        "SELECT length FROM prefix_resource WHERE pool = ? AND network <= ? ORDER BY network DESC LIMIT 1",
        (pool, network),
    ).fetchone()
    while length > resource_length:
        buddy = network ^ (2 ** (32 - length))
        found = db.execute(
            "DELETE FROM prefix_free WHERE pool = ? AND length = ? AND network = ? RETURNING network",
            (pool, length, buddy),
        ).fetchone()
        if found is None:
            break
        network &= buddy  # the merged block starts at the lower of the two
        length -= 1
    db.execute("INSERT INTO prefix_free VALUES (?, ?, ?)", (pool, length, network))


def extent(db: sqlite3.Connection, pool: str) -> tuple[IPv4Network, ...]:
    """The address space a prefix pool allocates from: its free blocks and what it handed out, merged
    (a released block merges with its free buddy, never past the pool's own prefixes)."""
    free = [
        IPv4Network((network, length))
        for length, network in db.execute("SELECT length, network FROM prefix_free WHERE pool = ?", (pool,))
    ]
    held = [IPv4Network(v) for (v,) in db.execute("SELECT value FROM reservation WHERE pool = ?", (pool,))]
    return tuple(collapse_addresses(free + held))


def usage(db: sqlite3.Connection) -> list[tuple[str, str, int, int]]:
    """(pool, kind, used, total) for every pool; a prefix pool counts addresses."""
    rows = db.execute(
        """
        SELECT p.name, 'number', COUNT(r.identifier), p.hi - p.lo + 1
          FROM number_pool p LEFT JOIN reservation r ON r.pool = p.name GROUP BY p.name
        UNION ALL
        SELECT p.name, 'prefix', COALESCE(SUM(r.size), 0), p.total
          FROM prefix_pool p LEFT JOIN reservation r ON r.pool = p.name GROUP BY p.name
        ORDER BY 1
        """
    ).fetchall()
    return [(str(a), str(b), int(c), int(d)) for a, b, c, d in rows]


def room(db: sqlite3.Connection, names: list[str]) -> dict[str, int]:
    """What each pool can still give: free numbers of a number pool; for a prefix pool the addresses of
    its largest free block (the buddy list never fragments for good, so that block is what fits)."""
    found: dict[str, int] = {}
    for name in names:
        numbers = db.execute(
            "SELECT SUM(hi - lo + 1) FROM number_free WHERE pool = ? GROUP BY pool", (name,)
        ).fetchone()
        if db.execute("SELECT 1 FROM number_pool WHERE name = ?", (name,)).fetchone():
            found[name] = int(numbers[0]) if numbers else 0
            continue
        if db.execute("SELECT 1 FROM prefix_pool WHERE name = ?", (name,)).fetchone():
            block = db.execute("SELECT MIN(length) FROM prefix_free WHERE pool = ?", (name,)).fetchone()
            found[name] = 2 ** (32 - int(block[0])) if block and block[0] is not None else 0
    return found
