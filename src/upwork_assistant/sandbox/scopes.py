"""The sandbox's API key scopes, and the check that a query stays inside them.

On Upwork, scopes belong to the API key (chosen on the key form), not to the authorize
request, and "Common Entities - Read-Only Access" is required for every key. A query that
selects a field outside the key's scopes fails as a whole, yet the GraphQL endpoint still
answers HTTP 200 (both: Upwork support article "API error handling"), with the message
users quote:

    The client or authentication token doesn't have enough oauth2 permissions/scopes to
    access: [Money.currency, Money.rawValue]

Only ``common-entities`` and its label are Upwork's; the other two ids are this sandbox's
model of the key form (which scope grants ``User.email`` on Upwork is unconfirmed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    visit,
)
from graphql.utilities import get_operation_ast


@dataclass(frozen=True)
class Scope:
    label: str
    fields: frozenset[str]  # "Type.field" names the scope grants


SCOPES: dict[str, Scope] = {
    "common-entities": Scope(
        "Common Entities - Read-Only Access",
        frozenset(
            {
                "Query.user",
                "User.id",
                "User.nid",
                "User.rid",
                "User.name",
                "User.photoUrl",
                "User.ciphertext",
            }
        ),
    ),
    "user-email": Scope(
        "User email (sandbox model; the real key form's scope for email is unconfirmed)",
        frozenset({"User.email"}),
    ),
    "organization": Scope(
        "Organization - Read-Only Access (sandbox model)",
        frozenset(
            {
                "Query.organization",
                "Query.companySelector",
                "Organization.id",
                "Organization.rid",
                "Organization.name",
                "Organization.type",
                "Organization.legacyType",
                "CompanySelector.items",
                "CompanySelectorItem.title",
                "CompanySelectorItem.organizationId",
                "CompanySelectorItem.organizationRid",
                "CompanySelectorItem.photoUrl",
            }
        ),
    ),
}

#: What a freshly approved key gets: Upwork requires Common Entities for every key.
DEFAULT_SCOPES: tuple[str, ...] = ("common-entities",)
ALL = "all"  # shorthand for every scope id

SCOPE_ERROR = (
    "The client or authentication token doesn't have enough oauth2 permissions/scopes "
    "to access: [{}]"
)


def check_scopes(ids: Iterable[str]) -> tuple[str, ...]:
    """The scope ids, ``all`` expanded, duplicates dropped; ValueError on an unknown id."""
    result: list[str] = []
    for scope_id in ids:
        expanded = list(SCOPES) if scope_id == ALL else [scope_id]
        for one in expanded:
            if one not in SCOPES:
                known = ", ".join([*SCOPES, ALL])
                raise ValueError(f"unknown scope {one!r}; known scopes: {known}")
            if one not in result:
                result.append(one)
    return tuple(result)


def parse_scopes(text: str) -> tuple[str, ...]:
    """``"a,b"``, ``"all"`` or ``""`` (the default scopes) to a tuple of scope ids."""
    ids = [part.strip() for part in text.split(",") if part.strip()]
    return check_scopes(ids) if ids else DEFAULT_SCOPES


def granted_fields(scope_ids: Iterable[str]) -> frozenset[str]:
    return frozenset().union(*(SCOPES[s].fields for s in scope_ids))


class _FieldWalker(Visitor):
    """Collects every selected ``Parent.field`` in the order the query selects it, fragment
    spreads expanded where they stand so a fragment cannot hide a field from the check."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        found: dict[str, FieldNode],
        expanded: set[str],
    ) -> None:
        super().__init__()
        self.schema, self.fragments = schema, fragments
        self.found, self.expanded = found, expanded
        self.type_info = TypeInfo(schema)

    def walk(self, node: Any) -> None:
        visit(node, TypeInfoVisitor(self.type_info, self))

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        parent = self.type_info.get_parent_type()
        name = node.name.value
        # Introspection (__typename, __schema, __type and their types) needs no scope.
        if parent is None or name.startswith("__") or parent.name.startswith("__"):
            return
        self.found.setdefault(f"{parent.name}.{name}", node)

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        name = node.name.value
        fragment = self.fragments.get(name)
        if fragment is None or name in self.expanded:
            return
        self.expanded.add(name)
        _FieldWalker(self.schema, self.fragments, self.found, self.expanded).walk(fragment)


def selected_fields(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> dict[str, FieldNode]:
    """``Parent.field`` -> its first node, for the operation that will run (a valid document
    assumed); empty when no operation would run (execution reports that itself)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return {}
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    found: dict[str, FieldNode] = {}
    _FieldWalker(schema, fragments, found, set()).walk(operation)
    return found


def scope_error(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    scope_ids: Iterable[str],
) -> dict[str, Any] | None:
    """The formatted GraphQL error for the fields the scopes do not grant, or None.

    The fields are listed in query order. Messages users quote from Upwork look sorted
    alphabetically instead ("[Contract.workDiaryTimeCells, DateTime.rawValue,
    Query.contract]" for ``contract { workDiaryTimeCells { ... } }``), so a client should
    treat the order as unspecified.
    """
    granted = granted_fields(scope_ids)
    missing = {
        name: node
        for name, node in selected_fields(schema, document, operation_name).items()
        if name not in granted
    }
    if not missing:
        return None
    error = GraphQLError(
        SCOPE_ERROR.format(", ".join(missing)),
        nodes=next(iter(missing.values())),
        extensions={"classification": "ExecutionAborted"},
    )
    return error.formatted
