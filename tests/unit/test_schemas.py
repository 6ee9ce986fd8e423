"""Offline consistency checks of the Infrahub schemas (schemas/) and bootstrap data (data/).

No server: the YAML is read as data and cross-checked the way Infrahub would resolve it
(kinds, inheritance, relationship identifiers, dropdown choices, references between
objects). Each check is a function returning a list of problems, so the last tests can
feed it deliberately broken input and prove that it does fail.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "schemas"
DATA_DIR = ROOT / "data"
SCHEMA_FILES = ["base.yml", "location_minimal.yml", "vlan.yml", "service.yml"]  # load order

# Infrahub core kinds our schemas and data refer to, with the fields we use on them.
# Anything else outside our own schemas is an error (e.g. a misspelled peer).
CORE_KINDS: dict[str, dict[str, Any]] = {
    "BuiltinTag": {"attributes": {"name": {}, "description": {"optional": True}}, "hfid": ["name__value"]},
    "BuiltinIPNamespace": {"attributes": {"name": {}}, "generic": True},
    "BuiltinIPPrefix": {
        "generic": True,
        "attributes": {"prefix": {}, "description": {"optional": True}, "member_type": {"optional": True}},
        "relationships": {"ip_namespace": {"peer": "BuiltinIPNamespace", "cardinality": "one"}},
    },
    "BuiltinIPAddress": {
        "generic": True,
        "attributes": {"address": {}, "description": {"optional": True}},
        "relationships": {"ip_namespace": {"peer": "BuiltinIPNamespace", "cardinality": "one"}},
    },
    "CoreProposedChange": {"attributes": {"name": {}}},
    "CoreArtifactTarget": {"generic": True},
    "CoreGroup": {"generic": True, "attributes": {"name": {}}, "hfid": ["name__value"]},
    "CoreStandardGroup": {
        "attributes": {"name": {}, "description": {"optional": True}},
        "hfid": ["name__value"],
        "inherit_from": ["CoreGroup"],
    },
    "CoreNumberPool": {
        "attributes": {
            "name": {},
            "description": {"optional": True},
            "node": {},
            "node_attribute": {},
            "start_range": {},
            "end_range": {},
        },
        "hfid": ["name__value"],
    },
    "CoreIPPrefixPool": {
        "attributes": {
            "name": {},
            "description": {"optional": True},
            "default_prefix_type": {"optional": True},
            "default_prefix_length": {"optional": True},
            "default_member_type": {"optional": True, "enum": ["prefix", "address"]},
        },
        "relationships": {
            "resources": {"peer": "BuiltinIPPrefix", "cardinality": "many"},
            "ip_namespace": {"peer": "BuiltinIPNamespace", "cardinality": "one"},
        },
        "hfid": ["name__value"],
    },
    # Who may do what (data/07_accounts.yml), as Infrahub 1.11 defines them.
    "CoreObjectPermission": {
        "attributes": {
            "namespace": {},
            "name": {},
            "action": {"enum": ["any", "create", "update", "delete", "view"]},
            "decision": {"enum": [1, 2, 4, 6]},
            "description": {"optional": True},
        },
        "hfid": ["namespace__value", "name__value", "action__value", "decision__value"],
    },
    "CoreGlobalPermission": {
        "attributes": {
            "action": {
                "enum": [
                    "edit_default_branch",
                    "merge_proposed_change",
                    "review_proposed_change",
                    "delete_branch",
                ]
            },
            "decision": {"enum": [1, 2, 4, 6]},
            "description": {"optional": True},
        },
        "hfid": ["action__value", "decision__value"],
    },
    "CoreAccountRole": {"attributes": {"name": {}}, "hfid": ["name__value"]},
    "CoreAccount": {
        "attributes": {
            "name": {},
            "password": {},
            "label": {"optional": True},
            "account_type": {"optional": True, "enum": ["User", "Script", "Bot", "Git"]},
        },
        "hfid": ["name__value"],
    },
    "CoreAccountGroup": {
        "attributes": {"name": {}},
        "relationships": {
            "roles": {"peer": "CoreAccountRole", "cardinality": "many"},
            "members": {"peer": "CoreAccount", "cardinality": "many"},
        },
        "hfid": ["name__value"],
    },
}
# Objects every Infrahub has before we load anything.
BUILTIN_OBJECTS = {"BuiltinIPNamespace": {"default"}}

# Relationships declared on one side only, on purpose.
ONE_SIDED_IDENTIFIERS = {
    # An address does not need to know which prefixes use it as their gateway.
    "prefix__gateway": "IpamPrefix.gateway",
    # Seed extension: tags on proposed changes; BuiltinTag is a core node we do not extend.
    "proposed_change__tags": "CoreProposedChange.tags",
}

SERVICE_STATUSES = ["draft", "in-delivery", "active", "in-decommissioning", "decommissioned"]

NAMESPACE_RE = re.compile(r"^[A-Z][a-z0-9]+$")
NAME_RE = re.compile(r"^[A-Z][a-zA-Z0-9]+$")
FIELD_RE = re.compile(r"^[a-z][a-z0-9_]*$")
ATTRIBUTE_KINDS = {
    "Text",
    "TextArea",
    "Number",
    "Boolean",
    "Dropdown",
    "IPHost",
    "IPNetwork",
    "URL",
    "JSON",
    "List",
}


# --------------------------------------------------------------------------- helpers


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load_schemas() -> dict[str, dict]:
    return {name: load_yaml_documents(SCHEMA_DIR / name)[0] for name in SCHEMA_FILES}


def load_object_files() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(DATA_DIR.glob("*.yml")):
        docs.extend((path.name, doc) for doc in load_yaml_documents(path))
    return docs


def build_registry(schemas: dict[str, dict]) -> dict[str, dict]:
    """kind -> {generic, attributes, relationships, inherit_from, hfid, children}; extensions merged."""
    registry: dict[str, dict] = {}
    for schema in schemas.values():
        for section, is_generic in (("generics", True), ("nodes", False)):
            for item in schema.get(section, []) or []:
                kind = f"{item.get('namespace')}{item.get('name')}"
                registry[kind] = {
                    "generic": is_generic,
                    "attributes": {a["name"]: a for a in item.get("attributes", []) or []},
                    "relationships": {r["name"]: r for r in item.get("relationships", []) or []},
                    "inherit_from": list(item.get("inherit_from", []) or []),
                    "hfid": item.get("human_friendly_id"),
                    "children": item.get("children") or None,
                    "raw": item,
                }
        for ext in (schema.get("extensions") or {}).get("nodes", []) or []:
            target = registry.get(ext["kind"])
            if target is None:
                continue  # reported by check_schema_kinds
            for rel in ext.get("relationships", []) or []:
                target["relationships"][rel["name"]] = rel
            for attr in ext.get("attributes", []) or []:
                target["attributes"][attr["name"]] = attr
    return registry


def full_kind(registry: dict[str, dict], kind: str) -> dict | None:
    """The kind with the attributes/relationships it inherits (our generics and core ones)."""
    if kind in registry:
        entry = registry[kind]
        attributes, relationships = {}, {}
        for parent in entry["inherit_from"]:
            parent_full = full_kind(registry, parent) or {}
            attributes.update(parent_full.get("attributes", {}))
            relationships.update(parent_full.get("relationships", {}))
        attributes.update(entry["attributes"])
        relationships.update(entry["relationships"])
        hfid = entry["hfid"]
        if not hfid:
            hfid = next(
                (registry[p]["hfid"] for p in entry["inherit_from"] if p in registry and registry[p]["hfid"]),
                None,
            )
        if entry["children"]:
            relationships["children"] = {"name": "children", "peer": entry["children"], "cardinality": "many"}
        # Every node of Infrahub is a CoreNode, which can be a member of groups.
        relationships.setdefault(
            "member_of_groups", {"name": "member_of_groups", "peer": "CoreGroup", "cardinality": "many"}
        )
        return {**entry, "attributes": attributes, "relationships": relationships, "hfid": hfid}
    if kind in CORE_KINDS:
        core = CORE_KINDS[kind]
        return {
            "generic": core.get("generic", False),
            "attributes": core.get("attributes", {}),
            "relationships": core.get("relationships", {}),
            "inherit_from": core.get("inherit_from", []),
            "hfid": core.get("hfid"),
            "children": None,
        }
    return None


def known_kinds(registry: dict[str, dict]) -> set[str]:
    return set(registry) | set(CORE_KINDS)


# --------------------------------------------------------------------------- schema checks


def check_schema_kinds(schemas: dict[str, dict]) -> list[str]:
    errors = []
    seen: dict[str, str] = {}
    for filename, schema in schemas.items():
        if str(schema.get("version")) != "1.0":
            errors.append(f"{filename}: version must be '1.0'")
        for section in ("generics", "nodes"):
            for item in schema.get(section, []) or []:
                namespace, name = item.get("namespace", ""), item.get("name", "")
                kind = f"{namespace}{name}"
                if not NAMESPACE_RE.match(namespace or ""):
                    errors.append(f"{filename}: {kind}: bad namespace {namespace!r}")
                if not NAME_RE.match(name or ""):
                    errors.append(f"{filename}: {kind}: bad name {name!r}")
                if kind in seen:
                    errors.append(f"{filename}: {kind} already defined in {seen[kind]}")
                seen[kind] = filename
                fields = [a.get("name") for a in item.get("attributes", []) or []]
                fields += [r.get("name") for r in item.get("relationships", []) or []]
                for field in fields:
                    if not FIELD_RE.match(field or ""):
                        errors.append(f"{filename}: {kind}: bad field name {field!r}")
                if len(fields) != len(set(fields)):
                    errors.append(f"{filename}: {kind}: duplicated field names")
                for attr in item.get("attributes", []) or []:
                    if attr.get("kind") not in ATTRIBUTE_KINDS:
                        errors.append(
                            f"{filename}: {kind}.{attr.get('name')}: unknown attribute kind {attr.get('kind')!r}"
                        )
                    if attr.get("kind") == "Dropdown":
                        choices = [c.get("name") for c in attr.get("choices", []) or []]
                        if not choices or len(choices) != len(set(choices)):
                            errors.append(
                                f"{filename}: {kind}.{attr['name']}: dropdown needs distinct choices"
                            )
                        default = attr.get("default_value")
                        if default is not None and default not in choices:
                            errors.append(
                                f"{filename}: {kind}.{attr['name']}: default {default!r} not a choice"
                            )
    return errors


def check_peers_and_inheritance(schemas: dict[str, dict]) -> list[str]:
    registry = build_registry(schemas)
    kinds = known_kinds(registry)
    generics = {k for k, v in registry.items() if v["generic"]} | {
        k for k, v in CORE_KINDS.items() if v.get("generic")
    }
    errors = []
    for filename, schema in schemas.items():
        for ext in (schema.get("extensions") or {}).get("nodes", []) or []:
            if ext.get("kind") not in kinds:
                errors.append(f"{filename}: extension of unknown kind {ext.get('kind')!r}")
    for kind, entry in registry.items():
        for parent in entry["inherit_from"]:
            if parent not in generics:
                errors.append(f"{kind}: inherit_from {parent!r} is not a known generic")
        for rel in entry["relationships"].values():
            if rel.get("peer") not in kinds:
                errors.append(f"{kind}.{rel.get('name')}: unknown peer {rel.get('peer')!r}")
        for key in ("parent", "children"):
            target = entry["raw"].get(key)
            if target and target not in registry:
                errors.append(f"{kind}: {key} {target!r} is not defined")
    # the file order must be loadable: a file may only use kinds from itself and earlier files
    defined: set[str] = set(CORE_KINDS)
    for filename in SCHEMA_FILES:
        schema = schemas[filename]
        defined |= {
            f"{i['namespace']}{i['name']}" for s in ("generics", "nodes") for i in schema.get(s, []) or []
        }
        items = [i for s in ("generics", "nodes") for i in schema.get(s, []) or []]
        items += (schema.get("extensions") or {}).get("nodes", []) or []
        for item in items:
            used = [r.get("peer") for r in item.get("relationships", []) or []] + list(
                item.get("inherit_from", []) or []
            )
            used += [item["kind"]] if "kind" in item else []
            for target in used:
                if target not in defined:
                    errors.append(f"{filename}: uses {target!r} before it is defined (load order)")
    return errors


def check_identifiers(schemas: dict[str, dict]) -> list[str]:
    """Every identifier is declared on exactly two sides (a generic's relationship counts once)."""
    registry = build_registry(schemas)
    sides: dict[str, list[tuple[str, dict]]] = {}
    for kind, entry in registry.items():
        for rel in entry["relationships"].values():
            identifier = rel.get("identifier")
            if not identifier:
                sides.setdefault("<missing>", []).append((kind, rel))
                continue
            sides.setdefault(identifier, []).append((kind, rel))
    errors = [
        f"{kind}.{rel['name']}: relationship without identifier" for kind, rel in sides.pop("<missing>", [])
    ]
    for identifier, decls in sides.items():
        where = [f"{kind}.{rel['name']}" for kind, rel in decls]
        if identifier in ONE_SIDED_IDENTIFIERS:
            if where != [ONE_SIDED_IDENTIFIERS[identifier]]:
                errors.append(
                    f"{identifier}: expected only on {ONE_SIDED_IDENTIFIERS[identifier]}, found on {where}"
                )
            continue
        if len(decls) != 2:
            errors.append(f"{identifier}: declared on {len(decls)} side(s) {where}, expected 2")
            continue
        (kind_a, rel_a), (kind_b, rel_b) = decls
        # each side must point to the other side's kind or to a generic it inherits from
        for (kind, rel), (other_kind, _) in (
            ((kind_a, rel_a), (kind_b, rel_b)),
            ((kind_b, rel_b), (kind_a, rel_a)),
        ):
            lineage = {other_kind, *registry[other_kind]["inherit_from"]}
            if rel["peer"] not in lineage:
                errors.append(
                    f"{identifier}: {kind}.{rel['name']} points to {rel['peer']}, expected {other_kind}"
                )
        directions = sorted(
            [rel_a.get("direction", "bidirectional"), rel_b.get("direction", "bidirectional")]
        )
        if directions not in (["bidirectional", "bidirectional"], ["inbound", "outbound"]):
            errors.append(f"{identifier}: incompatible directions {directions}")
    return errors


# --------------------------------------------------------------------------- data checks


def iter_objects(
    registry: dict[str, dict], kind: str, items: list[dict], path: str, parent: tuple[str, dict] | None = None
):
    """Yield (kind, data, path, parent) for every object of a file, children included."""
    for idx, data in enumerate(items, start=1):
        here = f"{path}[{idx}]"
        yield kind, data, here, parent
        schema = full_kind(registry, kind) or {"relationships": {}}
        for key, value in data.items():
            rel = schema["relationships"].get(key)
            if rel is not None and isinstance(value, dict) and "data" in value:
                child_kind = value.get("kind") or rel["peer"]
                yield from iter_objects(registry, child_kind, value["data"], f"{here}.{key}", (kind, data))


def hfid_of(schema: dict, data: dict, parent: tuple[str, dict] | None) -> tuple[str, ...] | None:
    if not schema.get("hfid"):
        return None
    parts = []
    for path in schema["hfid"]:
        elements = path.split("__")
        if len(elements) == 2:
            parts.append(str(data.get(elements[0])))
        elif parent is not None:
            parts.append(str(parent[1].get(elements[1])))
        else:
            ref = data.get(elements[0])
            parts.append(str(ref[0] if isinstance(ref, list) else ref))
    return tuple(parts)


def collect_objects(schemas: dict[str, dict], docs: list[tuple[str, dict]]) -> tuple[list, dict[str, set]]:
    registry = build_registry(schemas)
    objects = []
    index: dict[str, set] = {k: {(name,) for name in v} for k, v in BUILTIN_OBJECTS.items()}
    for filename, doc in docs:
        spec = doc.get("spec", {})
        for kind, data, path, parent in iter_objects(
            registry, spec.get("kind"), spec.get("data", []), filename, None
        ):
            objects.append((kind, data, path, parent))
            schema = full_kind(registry, kind)
            if schema is None:
                continue
            keys = {hfid_of(schema, data, parent)} if schema.get("hfid") else set()
            if "name" in data:
                keys.add((str(data["name"]),))
            for attr in ("prefix", "address"):
                if attr in data:
                    keys.add((str(data[attr]),))
            for target in {kind, *schema.get("inherit_from", [])}:
                index.setdefault(target, set()).update(k for k in keys if k)
    return objects, index


def check_object_files(schemas: dict[str, dict], docs: list[tuple[str, dict]]) -> list[str]:
    registry = build_registry(schemas)
    errors = []
    for filename, doc in docs:
        if doc.get("apiVersion") != "infrahub.app/v1" or doc.get("kind") != "Object":
            errors.append(f"{filename}: not an infrahub.app/v1 Object file")
        spec = doc.get("spec") or {}
        if not isinstance(spec.get("data"), list) or not spec.get("kind"):
            errors.append(f"{filename}: spec needs a kind and a data list")
    objects, index = collect_objects(schemas, docs)
    for kind, data, path, parent in objects:
        schema = full_kind(registry, kind)
        if schema is None:
            errors.append(f"{path}: unknown kind {kind!r}")
            continue
        if schema["generic"]:
            errors.append(f"{path}: {kind} is a generic, objects need a node kind")
        for key, value in data.items():
            if key in schema["attributes"]:
                attr = schema["attributes"][key]
                choices = [c["name"] for c in attr.get("choices", []) or []] or attr.get("enum")
                if choices and value not in choices:
                    errors.append(f"{path}.{key}: {value!r} is not one of {choices}")
                continue
            if key in schema["relationships"]:
                rel = schema["relationships"][key]
                if isinstance(value, dict):
                    continue  # nested children, checked as objects of their own
                refs = value if rel.get("cardinality") == "many" else [value]
                for ref in refs:
                    ref_key = tuple(str(p) for p in ref) if isinstance(ref, list) else (str(ref),)
                    if ref_key not in index.get(rel["peer"], set()):
                        errors.append(
                            f"{path}.{key}: {ref!r} does not match any {rel['peer']} defined in data/"
                        )
                continue
            errors.append(f"{path}: {key!r} is not an attribute or relationship of {kind}")
        # mandatory fields (the parent side of a nested child is filled by the loader)
        for name, attr in schema["attributes"].items():
            if (
                not attr.get("optional", False)
                and attr.get("default_value") is None
                and name not in data
                and (
                    kind in registry or name in ("name", "node", "node_attribute", "start_range", "end_range")
                )
            ):
                errors.append(f"{path}: mandatory attribute {name!r} missing")
        for name, rel in schema["relationships"].items():
            if (
                rel.get("optional", True) is False
                and name not in data
                and not (parent and rel.get("kind") == "Parent")
            ):
                errors.append(f"{path}: mandatory relationship {name!r} missing")
        if kind == "CoreNumberPool":
            target = full_kind(registry, data.get("node", ""))
            attr = (target or {}).get("attributes", {}).get(data.get("node_attribute"))
            if not attr or attr.get("kind") != "Number":
                errors.append(
                    f"{path}: {data.get('node')}.{data.get('node_attribute')} is not a Number attribute"
                )
            elif data["start_range"] > data["end_range"]:
                errors.append(f"{path}: start_range > end_range")
        if kind == "CoreIPPrefixPool" and data.get("default_prefix_type") not in registry:
            errors.append(f"{path}: default_prefix_type {data.get('default_prefix_type')!r} is not defined")
    return errors


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict]:
    return load_schemas()


@pytest.fixture(scope="module")
def docs() -> list[tuple[str, dict]]:
    return load_object_files()


@pytest.mark.parametrize(
    "path", sorted([*SCHEMA_DIR.glob("*.yml"), *DATA_DIR.glob("*.yml")]), ids=lambda p: p.name
)
def test_file_parses_as_yaml(path: Path) -> None:
    assert load_yaml_documents(path), f"{path} is empty"


def test_schema_directory_holds_the_four_files() -> None:
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.yml")) == sorted(SCHEMA_FILES)


def test_schema_kinds_are_well_formed(schemas) -> None:
    assert check_schema_kinds(schemas) == []


def test_peers_and_inheritance_resolve(schemas) -> None:
    assert check_peers_and_inheritance(schemas) == []


def test_relationship_identifiers_pair_up(schemas) -> None:
    assert check_identifiers(schemas) == []


def test_object_files_are_consistent(schemas, docs) -> None:
    assert check_object_files(schemas, docs) == []


def test_service_status_spelling(schemas) -> None:
    registry = build_registry(schemas)
    status = registry["ServiceDedicatedInternet"]["attributes"]["status"]
    assert [c["name"] for c in status["choices"]] == SERVICE_STATUSES
    assert status.get("branch") == "aware"
    assert registry["ServiceDedicatedInternet"]["raw"].get("branch") == "agnostic"
    for attr in ("service_identifier", "account_reference"):
        assert registry["ServiceGeneric"]["attributes"][attr].get("branch") == "agnostic"
    assert registry["ServiceGeneric"]["attributes"]["service_identifier"].get("unique") is True
    for path in [*SCHEMA_DIR.glob("*.yml"), *DATA_DIR.glob("*")]:
        assert "decomission" not in path.read_text().lower(), f"blog-era spelling in {path.name}"


def test_fields_the_allocation_core_relies_on(schemas) -> None:
    registry = build_registry(schemas)
    expected = {
        "DcimDevice": ["name", "status", "role", "index", "location", "interfaces"],
        "DcimInterfaceL2": [
            "name",
            "description",
            "speed",
            "mtu",
            "enabled",
            "status",
            "role",
            "device",
            "service",
            "l2_mode",
            "untagged_vlan",
            "tagged_vlan",
        ],
        "DcimInterfaceL3": ["name", "speed", "status", "role", "device", "service", "ip_addresses", "vlan"],
        "IpamVLAN": ["name", "vlan_id", "status", "role", "description", "l2domain", "service"],
        "IpamPrefix": ["prefix", "status", "role", "description", "vlan", "gateway", "service"],
        "IpamIPAddress": ["address", "description", "interface", "service"],
        "ServiceDedicatedInternet": [
            "service_identifier",
            "account_reference",
            "status",
            "bandwidth",
            "ip_package",
            "location",
            "dedicated_interfaces",
            "vlan",
            "gateway_ip_address",
            "prefix",
        ],
    }
    for kind, fields in expected.items():
        schema = full_kind(registry, kind)
        missing = [f for f in fields if f not in schema["attributes"] and f not in schema["relationships"]]
        assert not missing, f"{kind} lacks {missing}"
    interface = registry["DcimInterface"]["attributes"]
    assert {"customer", "uplink", "loopback"} <= {c["name"] for c in interface["role"]["choices"]}
    assert {"free", "active", "disabled"} <= {c["name"] for c in interface["status"]["choices"]}
    for kind in ("IpamVLAN", "IpamPrefix"):
        assert "customer" in {c["name"] for c in registry[kind]["attributes"]["role"]["choices"]}
    assert registry["DcimInterfaceL3"]["relationships"]["vlan"]["cardinality"] == "one"
    assert registry["IpamVLAN"]["raw"]["uniqueness_constraints"] == [["l2domain", "vlan_id__value"]]
    assert {"100", "1000", "10000"} == {
        c["name"] for c in registry["ServiceDedicatedInternet"]["attributes"]["bandwidth"]["choices"]
    }


def test_otter_net_content(schemas, docs) -> None:
    objects, _ = collect_objects(schemas, docs)
    sites = {d["shortname"] for k, d, _, _ in objects if k == "LocationSite"}
    assert sites == {"lyn01", "par01", "bru01", "ams01"}
    devices: dict[str, dict] = {}
    for k, d, _, _ in objects:  # a later file upserts a device: what it sets wins
        if k == "DcimDevice":
            devices[d["name"]] = {**devices.get(d["name"], {}), **d}
    for site in sites:
        for prefix, role in (("sw", "core"), ("rb", "edge")):
            for idx in (1, 2):
                device = devices[f"{prefix}0{idx}-{site}"]
                assert (device["role"], device["index"], device["location"]) == (role, idx, [site])
    ports = [
        (p[1]["name"], d) for k, d, _, p in objects if k == "DcimInterfaceL2" and d.get("role") == "customer"
    ]
    assert all(d["status"] == "free" and d["enabled"] is False for _, d in ports)
    ten_gig = {dev for dev, d in ports if d["speed"] >= 10000}
    assert ten_gig and not any(dev.endswith("bru01") for dev in ten_gig)
    assert any(k.startswith("DcimInterface") and d.get("role") != "customer" for k, d, _, _ in objects)
    l2domains = {d["name"] for k, d, _, _ in objects if k == "IpamL2Domain"}
    assert l2domains == {"default", *sites}
    pools = {d["name"]: d for k, d, _, _ in objects if k in ("CoreNumberPool", "CoreIPPrefixPool")}
    assert (pools["Customer vlan pool"]["start_range"], pools["Customer vlan pool"]["end_range"]) == (
        1000,
        2000,
    )
    prefix_pool = pools["Customer prefixes pool"]
    assert prefix_pool["default_prefix_length"] == 29 and prefix_pool["resources"] == ["203.0.113.0/24"]
    for kind, data, _path, _ in objects:
        if kind == "IpamPrefix":
            ipaddress.ip_network(data["prefix"])  # strict: host bits must be zero


# --------------------------------------------------------------------------- the checks can fail


def _broken(schemas: dict[str, dict], filename: str, mutate) -> dict[str, dict]:
    copy_ = copy.deepcopy(schemas)
    mutate(copy_[filename])
    return copy_


def _node(schema: dict, name: str) -> dict:
    return next(i for s in ("generics", "nodes") for i in schema.get(s, []) or [] if i["name"] == name)


def test_a_misspelled_peer_is_caught(schemas) -> None:
    def mutate(schema):
        _node(schema, "DedicatedInternet")["relationships"][0]["peer"] = "LocationSiet"

    assert any(
        "LocationSiet" in e for e in check_peers_and_inheritance(_broken(schemas, "service.yml", mutate))
    )


def test_a_missing_inherit_target_is_caught(schemas) -> None:
    def mutate(schema):
        _node(schema, "InterfaceL2")["inherit_from"] = ["DcimInterfaceGeneric"]

    assert check_peers_and_inheritance(_broken(schemas, "base.yml", mutate))


def test_an_unpaired_identifier_is_caught(schemas) -> None:
    def mutate(schema):
        _node(schema, "VLAN")["relationships"][0]["identifier"] = "l2domain__vlan"

    assert check_identifiers(_broken(schemas, "vlan.yml", mutate))


def test_a_bad_kind_name_is_caught(schemas) -> None:
    def mutate(schema):
        _node(schema, "Site")["namespace"] = "location"

    assert check_schema_kinds(_broken(schemas, "location_minimal.yml", mutate))


def test_bad_data_is_caught(schemas, docs) -> None:
    broken = copy.deepcopy(docs)
    devices = next(doc for name, doc in broken if doc["spec"]["kind"] == "DcimDevice")
    devices["spec"]["data"][0]["location"] = ["lyn02"]
    devices["spec"]["data"][0]["interfaces"]["data"][1]["status"] = "unused"
    broken.append(
        (
            "extra.yml",
            {
                "apiVersion": "infrahub.app/v1",
                "kind": "Object",
                "spec": {"kind": "IpamVlan", "data": [{"name": "x"}]},
            },
        )
    )
    errors = check_object_files(schemas, broken)
    assert any("lyn02" in e for e in errors)
    assert any("'unused'" in e for e in errors)
    assert any("IpamVlan" in e for e in errors)


def test_every_switch_and_router_is_an_artifact_target_and_infrahub_yml_leaves_them_alone(
    schemas, docs
) -> None:
    """The configuration artifacts of .infrahub.yml target two device groups; every core switch and
    edge router of Otter-net is in the group of its role, and the groups' file is not among the
    objects a repository import re-applies (it would drop Infrahub's own query groups)."""
    objects, _ = collect_objects(schemas, docs)
    roles: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for kind, data, _, _ in objects:
        if kind == "DcimDevice":
            roles.setdefault(data["name"], data["role"])
            if "member_of_groups" in data:
                groups[data["name"]] = data["member_of_groups"]
    by_role = {"core": "dedicated_internet_core_switches", "edge": "dedicated_internet_edge_routers"}
    assert groups == {name: [by_role[role]] for name, role in roles.items()}
    config = yaml.safe_load((ROOT / ".infrahub.yml").read_text())
    assert {d["targets"] for d in config["artifact_definitions"]} == set(by_role.values())
    assert "DcimDevice" in registry_inherits(schemas, "CoreArtifactTarget")
    assert "data/08_device_groups.yml" not in config["objects"]


def registry_inherits(schemas: dict[str, dict], generic: str) -> set[str]:
    return {kind for kind, entry in build_registry(schemas).items() if generic in entry["inherit_from"]}
