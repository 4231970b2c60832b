"""The sandbox's API key scopes, and the check that a query stays inside them.

On Upwork, scopes belong to the API key (chosen on the key form), not to the authorize
request, and "Common Entities - Read-Only Access" is required for every key. A query that
selects a field outside the key's scopes fails as a whole, yet the GraphQL endpoint still
answers HTTP 200 (both: Upwork support article "API error handling"), with the message
users quote:

    The client or authentication token doesn't have enough oauth2 permissions/scopes to
    access: [Money.currency, Money.rawValue]

Five scopes, named by ids of this sandbox (Upwork's key form shows labels only):

- ``common-entities`` (the default): the signed-in user's ids, name, portrait and profile
  key, and every field of ``GenericUser``, ``Money`` and ``Country``. Upwork's label.
- ``user-email``: ``CurrentUser.email``. The sandbox's model: which scope grants the email
  on Upwork is unconfirmed.
- ``organization``: ``Query.organization``, ``Query.companySelector`` and their types. The
  sandbox's model of an organization scope.
- ``freelancer-profile``: ``CurrentUser.freelancerProfile``,
  ``Query.freelancerProfileByProfileKey`` and every field of the freelancer profile types
  except ``FreelancerProfile.countryDetails``. Upwork's label ("Freelancer Profile - Read
  And Write Access").
- ``profile-country``: ``FreelancerProfile.countryDetails`` alone. The sandbox's model of
  the unnamed, elevated scope a live client found that field to need.

Only the ``common-entities`` and ``freelancer-profile`` labels are Upwork's; the others
are this sandbox's model of the key form.
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
    GraphQLFormattedError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    visit,
)
from graphql.utilities import get_operation_ast

from .schema import build


@dataclass(frozen=True)
class Scope:
    label: str
    fields: frozenset[str]  # "Type.field" names the scope grants


def _every_field(*type_names: str) -> frozenset[str]:
    """``Type.field`` for every field of the named types of the sandbox's schema."""
    schema = build()
    found: set[str] = set()
    for name in type_names:
        gql_type = schema.get_type(name)
        assert isinstance(gql_type, GraphQLObjectType | GraphQLInterfaceType), name
        found.update(f"{name}.{field}" for field in gql_type.fields)
    return frozenset(found)


#: The types only a key with the freelancer-profile scope may read.
FREELANCER_PROFILE_TYPES = (
    "FreelancerProfile",
    "FreelancerProfilePersonalData",
    "FreelancerLocation",
    "Portrait",
    "FreelancerSkillsConnection",
    "FreeLancerSkillEdge",
    "Skill",
    "FreelancerProfileLanguagesConnection",
    "FreelancerProfileLanguageEdge",
    "FreelancerProfileLanguage",
    "Language",
    "FreelancerProfileAvailability",
    "FreelancerProfileAggregates",
    "FreelancerProfileEducationRecord",
    "FreelancerProfileEmploymentRecord",
    "FreelancerProfileUserPreferences",
)

SCOPES: dict[str, Scope] = {
    # Upwork's label; its description on the key form: "City, Country, Organization, User,
    # Money" and "required for all the cases" (quoted by several setup guides).
    "common-entities": Scope(
        "Common Entities - Read-Only Access",
        frozenset(
            {
                "Query.user",
                "CurrentUser.id",
                "CurrentUser.nid",
                "CurrentUser.rid",
                "CurrentUser.name",
                "CurrentUser.photoUrl",
                "CurrentUser.ciphertext",
            }
        )
        | _every_field("GenericUser", "Money", "Country"),
    ),
    "user-email": Scope(
        "User email (sandbox model; the real key form's scope for email is unconfirmed)",
        frozenset({"CurrentUser.email"}),
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
    # Upwork's label ("pub-freelancer-profiles:write:all"; the key form lists only this
    # read-and-write variant: muhammedaksam/upwork-node SCOPES.md and setup guides).
    "freelancer-profile": Scope(
        "Freelancer Profile - Read And Write Access",
        frozenset({"CurrentUser.freelancerProfile", "Query.freelancerProfileByProfileKey"})
        | (_every_field(*FREELANCER_PROFILE_TYPES) - {"FreelancerProfile.countryDetails"}),
    ),
    # A live client found FreelancerProfile.countryDetails refused with the profile scope
    # ("requires elevated scope": borntojesus/upwork-crm src/research/
    # fetch-top-freelancers.ts); which scope grants it is unknown, so it is its own here.
    "profile-country": Scope(
        "Freelancer profile country (sandbox model of an unnamed, elevated scope)",
        frozenset({"FreelancerProfile.countryDetails"}),
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
) -> GraphQLFormattedError | None:
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
