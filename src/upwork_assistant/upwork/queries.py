"""The GraphQL queries the product sends to Upwork, as trees that can drop refused fields.

Upwork's scopes are fixed on the API key, and a single field outside them fails the whole
query: HTTP 200, ``data: null``, and an error naming the refused fields as ``Type.field``
(Upwork support, "API error handling"; the message reads "The client or authentication
token doesn't have enough oauth2 permissions/scopes to access: [Money.currency, ...]").
So each query is kept as a tree whose nodes know their GraphQL type: given the refused
``Type.field`` names, :meth:`Query.without` builds the same query minus those fields, and
the caller asks again for what the key does grant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import UpworkScopeError


@dataclass(frozen=True)
class Field:
    """``name`` on its parent type ``parent``; ``children`` when it is an object."""

    parent: str
    name: str
    children: tuple[Field, ...] = ()

    @property
    def path(self) -> str:
        return f"{self.parent}.{self.name}"

    def without(self, refused: frozenset[str]) -> Field | None:
        if self.path in refused:
            return None
        if not self.children:
            return self
        kept = tuple(c for c in (c.without(refused) for c in self.children) if c is not None)
        return Field(self.parent, self.name, kept) if kept else None

    def render(self) -> str:
        if not self.children:
            return self.name
        return f"{self.name} {{ {' '.join(c.render() for c in self.children)} }}"

    def paths(self) -> list[str]:
        return [self.path, *(p for c in self.children for p in c.paths())]


def obj(parent: str, name: str, type_name: str, *leaves: str | Field) -> Field:
    """An object field ``name`` (of GraphQL type ``type_name``) on ``parent``."""
    return Field(
        parent,
        name,
        tuple(c if isinstance(c, Field) else Field(type_name, c) for c in leaves),
    )


@dataclass(frozen=True)
class Query:
    name: str
    fields: tuple[Field, ...]
    #: Fields without which the answer is useless (e.g. the user's id at sign-in).
    required: frozenset[str] = field(default_factory=frozenset)

    def render(self) -> str:
        return f"query {self.name} {{ {' '.join(f.render() for f in self.fields)} }}"

    def paths(self) -> list[str]:
        return [p for f in self.fields for p in f.paths()]

    def without(self, refused: Iterable[str]) -> Query | None:
        """This query minus the refused fields; None when a required field is refused or
        nothing is left to ask."""
        gone = frozenset(refused)
        if gone & self.required:
            return None
        kept = tuple(f for f in (f.without(gone) for f in self.fields) if f is not None)
        return Query(self.name, kept, self.required) if kept else None


#: What sign-in and every profile sync ask: one request when the key grants it all.
#: The user's identity (``id`` is what an account is made from); email, photo and the
#: profile key (``ciphertext``, an alias of the profile key per Upwork's API FAQ); the
#: organization whose id goes out as ``X-Upwork-API-TenantId``.
PROFILE = Query(
    "profile",
    (
        obj("Query", "user", "User", "id", "nid", "rid", "name", "email", "photoUrl", "ciphertext"),
        obj("Query", "organization", "Organization", "id", "name", "type", "legacyType"),
    ),
    required=frozenset({"Query.user", "User.id"}),
)

#: What each optional part of the profile gives the user, for messages about refused
#: fields ("this installation's Upwork key does not grant ...").
FEATURES: dict[str, str] = {
    "User.email": "email",
    "User.name": "name",
    "User.nid": "identity",
    "User.rid": "identity",
    "User.photoUrl": "photo",
    "User.ciphertext": "profile_key",
    "Query.organization": "organization",
    "Organization.id": "organization",
    "Organization.name": "organization",
    "Organization.type": "organization",
    "Organization.legacyType": "organization",
}


def features_of(refused: Iterable[str]) -> list[str]:
    """The product features that refused fields take away, in a stable order."""
    return sorted({FEATURES.get(path, path) for path in refused})


@dataclass(frozen=True)
class Fetched:
    """A query's data and what the key's scopes refused of it (``Type.field`` names)."""

    data: dict[str, Any]
    refused: list[str]
    #: Upwork's own words about the refusal, for the logs and the security log.
    upwork_message: str | None = None


async def fetch_granted(
    run: Callable[[str], Awaitable[dict[str, Any]]],
    query: Query,
    attempts: int = 3,
    known_refused: Iterable[str] = (),
) -> Fetched:
    """Run ``query``; when Upwork refuses fields for scope reasons, ask again without them.

    One request when the key grants everything, or when ``known_refused`` (what the key
    refused last time) is left out from the start; one more per new refusal (Upwork names
    every refused field of a query at once). Raises the scope error when a required field
    is refused, or when Upwork's error names nothing we could drop."""
    refused: list[str] = [f for f in dict.fromkeys(known_refused) if f in query.paths()]
    said: str | None = None
    current: Query | None = query.without(refused) if refused else query
    for _ in range(attempts):
        assert current is not None
        try:
            data = await run(current.render())
        except UpworkScopeError as exc:
            new = [f for f in exc.refused if f not in refused]
            said = exc.upwork_message
            if exc.data is not None and not set(new) & query.required:
                return Fetched(exc.data, refused + new, said)  # the granted part came too
            refused += new
            following = query.without(refused) if new else None
            if following is None or following == current:
                raise
            current = following
            continue
        return Fetched(data, refused, said)
    raise UpworkScopeError(refused, said)
