"""Read Infrahub object files (the format ``infrahubctl object load`` takes) into flat records.

The embedded backend loads the very files Infrahub loads, so there is one source of bootstrap
data. Only the structure matters here: nested ``children`` and component relationships become
records that know their parent; references stay as written (a name, a list of HFID parts).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_LOADER = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)  # libyaml when present: large topologies load 10x faster


@dataclass
class ObjectRecord:
    kind: str
    values: dict[str, Any]
    parent: ObjectRecord | None = None
    source: str = ""
    children: list[ObjectRecord] = field(default_factory=list)

    def ref(self, name: str) -> str | None:
        """A single-valued reference, reduced to the last part of its HFID (``[sw01, Eth1]`` -> Eth1
        is never what we want, so callers only use this for one-part HFIDs: names, shortnames)."""
        return reference(self.values.get(name))


def reference(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int):
        return str(value)
    if isinstance(value, list) and value:
        return reference(value[0]) if len(value) == 1 else "__".join(str(v) for v in value)
    if isinstance(value, dict):
        for key in ("hfid", "id", "name", "value"):
            if key in value:
                return reference(value[key])
        data = value.get("data")
        if isinstance(data, list) and data:
            return reference(data[0])
    return None


def references(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        return [r for item in value["data"] if (r := reference(item))]
    if isinstance(value, list):
        return [r for item in value if (r := reference(item))]
    single = reference(value)
    return [single] if single else []


def load_files(path: Path) -> list[ObjectRecord]:
    """Every object of every ``.yml``/``.yaml`` file under ``path`` (or the one file), in file name order."""
    files = [path] if path.is_file() else sorted([*path.rglob("*.yml"), *path.rglob("*.yaml")])
    records: list[ObjectRecord] = []
    for file in files:
        for document in yaml.load_all(file.read_text(), Loader=_LOADER):
            if not isinstance(document, dict) or document.get("kind") != "Object":
                continue
            spec = document.get("spec") or {}
            records.extend(_walk(spec.get("kind", ""), spec.get("data") or [], None, file.name))
    return records


def _walk(kind: str, items: list[Any], parent: ObjectRecord | None, source: str) -> Iterator[ObjectRecord]:
    for item in items:
        if not isinstance(item, dict):
            continue
        values: dict[str, Any] = {}
        nested: list[tuple[str, list[Any]]] = []
        for key, value in item.items():
            if _is_nested(value):
                nested.append((value.get("kind", ""), value["data"]))
            else:
                values[key] = value
        record = ObjectRecord(kind=kind, values=values, parent=parent, source=source)
        yield record
        for child_kind, child_items in nested:
            for child in _walk(child_kind or kind, child_items, record, source):
                if child.parent is record:
                    record.children.append(child)
                yield child


def _is_nested(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("data"), list)
        and bool(value["data"])
        and isinstance(value["data"][0], dict)
        and "kind" in value
    )
