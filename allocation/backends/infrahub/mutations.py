"""Several mutations in one GraphQL document: one round trip, run by Infrahub in the given order.

Each mutation commits on its own and a failing one does not stop the next, so a document is not a
transaction: every caller builds its document from what is still missing, looks at which aliases
failed, and running it again after a partial failure finishes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Op:
    mutation: str
    input_type: str
    data: dict[str, Any]
    selection: str = "ok"
    arguments: str = ""  # literal arguments besides ``data``, e.g. "wait_until_completion: true"
    alias: str = ""  # names the result; m<position> when empty


def create(kind: str, data: dict[str, Any], *, selection: str = "ok", alias: str = "") -> Op:
    return Op(f"{kind}Create", f"{kind}CreateInput", data, selection, alias=alias)


def update(kind: str, data: dict[str, Any], *, alias: str = "") -> Op:
    return Op(f"{kind}Update", f"{kind}UpdateInput", data, alias=alias)


def delete(kind: str, node_id: str) -> Op:
    return Op(f"{kind}Delete", "DeleteInput", {"id": node_id})


def prefix_from_pool(data: dict[str, Any], *, alias: str) -> Op:
    """A prefix from a prefix pool (IPPrefixPoolGetResourceInput: pool, identifier, length, data)."""
    return Op(
        "InfrahubIPPrefixPoolGetResource",
        "IPPrefixPoolGetResourceInput",
        data,
        "ok node { id display_label }",
        alias=alias,
    )


def create_branch(name: str, *, wait: bool = True) -> Op:
    return Op(
        "BranchCreate",
        "BranchCreateInput",
        {"name": name, "sync_with_git": False},
        arguments=f"wait_until_completion: {str(wait).lower()}",
        alias="branch",
    )


def delete_branch(name: str, *, wait: bool = True) -> Op:
    return Op(
        "BranchDelete",
        "BranchDeleteInput",
        {"name": name},
        arguments=f"wait_until_completion: {str(wait).lower()}",
        alias="branch_delete",
    )


def name_of(op: Op, position: int) -> str:
    return op.alias or f"m{position}"


def document(ops: list[Op]) -> tuple[str, dict[str, Any]]:
    """The GraphQL text and variables of ``ops`` as one mutation request."""
    declarations = ", ".join(f"$d{i}: {op.input_type}!" for i, op in enumerate(ops))
    body = "\n".join(
        f"  {name_of(op, i)}: {op.mutation}(data: $d{i}{', ' + op.arguments if op.arguments else ''}) "
        f"{{ {op.selection} }}"
        for i, op in enumerate(ops)
    )
    return f"mutation Batch({declarations}) {{\n{body}\n}}", {f"d{i}": op.data for i, op in enumerate(ops)}


def attr(value: Any) -> dict[str, Any]:
    return {"value": value}


def ref(node_id: str) -> dict[str, Any]:
    return {"id": node_id}


def hfid(*parts: str | int) -> dict[str, Any]:
    return {"hfid": [str(p) for p in parts]}
