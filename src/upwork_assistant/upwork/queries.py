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

from .errors import UpworkNullFields, UpworkScopeError

#: Interfaces a type implements: Upwork's ``Query.user`` is a ``CurrentUser``, which
#: implements ``User { id nid rid }`` (Upwork's schema as dumped in borntojesus/upwork-crm
#: ``schema/upwork.graphql``). A refusal naming the interface's field is taken to mean the
#: concrete type's too, so either spelling drops the field.
IMPLEMENTS: dict[str, tuple[str, ...]] = {"CurrentUser": ("User",)}


@dataclass(frozen=True)
class Field:
    """``name`` on its parent type ``parent``; ``children`` when it is an object.

    ``part`` names what the field (and all below it, unless a child names its own) gives
    the user, for saying what a key's scopes take away ("email", "rate", "skills")."""

    parent: str
    name: str
    children: tuple[Field, ...] = ()
    part: str | None = None

    @property
    def path(self) -> str:
        return f"{self.parent}.{self.name}"

    def names(self) -> set[str]:
        """Every ``Type.field`` spelling that means this field."""
        return {self.path, *(f"{i}.{self.name}" for i in IMPLEMENTS.get(self.parent, ()))}

    def without(self, refused: frozenset[str]) -> Field | None:
        if self.names() & refused:
            return None
        if not self.children:
            return self
        kept = tuple(c for c in (c.without(refused) for c in self.children) if c is not None)
        return Field(self.parent, self.name, kept, self.part) if kept else None

    def parts(self, refused: frozenset[str], inherited: str | None = None) -> set[str]:
        """The parts that refused fields at or below this one take away."""
        label = self.part or inherited
        if self.names() & refused:
            return {label or self.path}
        return {p for c in self.children for p in c.parts(refused, label)}

    def render(self) -> str:
        if not self.children:
            return self.name
        return f"{self.name} {{ {' '.join(c.render() for c in self.children)} }}"

    def paths(self) -> list[str]:
        return [self.path, *(p for c in self.children for p in c.paths())]


def obj(
    parent: str, name: str, type_name: str, *leaves: str | Field, part: str | None = None
) -> Field:
    """An object field ``name`` (of GraphQL type ``type_name``) on ``parent``."""
    return Field(
        parent,
        name,
        tuple(c if isinstance(c, Field) else Field(type_name, c) for c in leaves),
        part,
    )


def leaf(parent: str, name: str, part: str) -> Field:
    return Field(parent, name, part=part)


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

    def names(self) -> set[str]:
        """Every spelling of every field (interface names included)."""
        found: set[str] = set()
        stack = list(self.fields)
        while stack:
            node = stack.pop()
            found |= node.names()
            stack.extend(node.children)
        return found

    def parts(self, refused: Iterable[str]) -> list[str]:
        """What the refused fields take away, as part names, in a stable order."""
        gone = frozenset(refused)
        return sorted({p for f in self.fields for p in f.parts(gone)})

    def without(self, refused: Iterable[str]) -> Query | None:
        """This query minus the refused fields; None when a required field is refused or
        nothing is left to ask."""
        gone = frozenset(refused)
        if any(f.names() & gone for f in self._required_fields()):
            return None
        kept = tuple(f for f in (f.without(gone) for f in self.fields) if f is not None)
        return Query(self.name, kept, self.required) if kept else None

    def _required_fields(self) -> list[Field]:
        found: list[Field] = []
        stack = list(self.fields)
        while stack:
            node = stack.pop()
            if node.path in self.required:
                found.append(node)
            stack.extend(node.children)
        return found

    def is_required(self, refused: Iterable[str]) -> bool:
        """True when one of ``refused`` names a field the query cannot do without."""
        gone = frozenset(refused)
        return any(f.names() & gone for f in self._required_fields())


M = "Money"
FP = "FreelancerProfile"
PD = "FreelancerProfilePersonalData"

#: The freelancer's profile (what clients see), under ``user`` so that identity and
#: profile come in one request. Field names: Upwork's schema (borntojesus/upwork-crm
#: ``schema/upwork.graphql``; muhammedaksam/upwork-node ``generated-types.ts``, which alone
#: has ``personalData.address``: asked, and dropped when a key or schema refuses it).
FREELANCER_PROFILE = obj(
    "CurrentUser",
    "freelancerProfile",
    FP,
    "fullName",
    "firstName",
    "lastName",
    obj(FP, "portrait", "Portrait", "portrait100", "portrait500", part="photo"),
    obj(FP, "countryDetails", "Country", "name", "twoLetterAbbreviation", part="country"),
    obj(
        FP,
        "personalData",
        PD,
        leaf(PD, "title", "title"),
        leaf(PD, "description", "overview"),
        leaf(PD, "profileUrl", "profile_link"),
        obj(PD, "chargeRate", M, "rawValue", "currency", "displayValue", part="rate"),
        obj(
            PD,
            "address",
            "FreelancerLocation",
            "countryName",
            "cityName",
            "timezone",
            part="location",
        ),
    ),
    obj(
        FP,
        "skills",
        "FreelancerSkillsConnection",
        obj(
            "FreelancerSkillsConnection",
            "edges",
            "FreeLancerSkillEdge",
            obj("FreeLancerSkillEdge", "node", "Skill", "preferredLabel", "prettyName"),
        ),
        part="skills",
    ),
    obj(
        FP,
        "languages",
        "FreelancerProfileLanguagesConnection",
        obj(
            "FreelancerProfileLanguagesConnection",
            "edges",
            "FreelancerProfileLanguageEdge",
            obj(
                "FreelancerProfileLanguageEdge",
                "node",
                "FreelancerProfileLanguage",
                obj(
                    "FreelancerProfileLanguage",
                    "language",
                    "Language",
                    "englishName",
                    "iso639Code",
                ),
            ),
        ),
        part="languages",
    ),
    obj(
        FP,
        "availability",
        "FreelancerProfileAvailability",
        "name",
        "availabilityDateTime",
        part="availability",
    ),
    obj(
        FP,
        "aggregates",
        "FreelancerProfileAggregates",
        leaf("FreelancerProfileAggregates", "jobSuccessScore", "job_success_score"),
        leaf("FreelancerProfileAggregates", "topRatedStatus", "badges"),
        "totalHours",
        "totalHourlyJobs",
        "totalFixedJobs",
        "totalFeedback",
        obj(
            "FreelancerProfileAggregates",
            "totalEarnings",
            M,
            "rawValue",
            "currency",
            "displayValue",
            part="earnings",
        ),
        part="work_history",
    ),
    obj(
        FP,
        "educationRecords",
        "FreelancerProfileEducationRecord",
        "institutionName",
        "degree",
        "areaOfStudy",
        "startDate",
        "endDate",
        part="education",
    ),
    obj(
        FP,
        "employmentRecords",
        "FreelancerProfileEmploymentRecord",
        "companyName",
        "jobTitle",
        "startDate",
        "endDate",
        part="employment",
    ),
    obj(
        FP,
        "userPreferences",
        "FreelancerProfileUserPreferences",
        "hideEarnings",
        "hideJss",
        part="privacy_settings",
    ),
    part="freelancer_profile",
)

#: What sign-in and every profile sync ask: one request when the key grants it all.
#: The user's identity (``id`` is what an account is made from); email, photo and the
#: profile key (``ciphertext``, an alias of the profile key per Upwork's API FAQ); the
#: freelancer profile; the organization whose id goes out as ``X-Upwork-API-TenantId``.
PROFILE = Query(
    "profile",
    (
        obj(
            "Query",
            "user",
            "CurrentUser",
            "id",
            leaf("CurrentUser", "nid", "identity"),
            leaf("CurrentUser", "rid", "identity"),
            leaf("CurrentUser", "name", "name"),
            leaf("CurrentUser", "email", "email"),
            leaf("CurrentUser", "photoUrl", "account_photo"),
            leaf("CurrentUser", "ciphertext", "profile_key"),
            FREELANCER_PROFILE,
        ),
        obj(
            "Query",
            "organization",
            "Organization",
            "id",
            "name",
            "type",
            "legacyType",
            part="organization",
        ),
    ),
    required=frozenset({"Query.user", "CurrentUser.id"}),
)

#: The parts that belong to the freelancer profile (shown on the dashboard's profile card).
FREELANCER_PARTS = frozenset(
    {
        "freelancer_profile",
        "photo",
        "country",
        "title",
        "overview",
        "profile_link",
        "rate",
        "location",
        "skills",
        "languages",
        "availability",
        "job_success_score",
        "badges",
        "earnings",
        "work_history",
        "education",
        "employment",
        "privacy_settings",
    }
)


def features_of(refused: Iterable[str]) -> list[str]:
    """The product features (parts) that refused fields take away, in a stable order."""
    return PROFILE.parts(refused)


@dataclass(frozen=True)
class Fetched:
    """A query's data and what the key's scopes refused of it (``Type.field`` names)."""

    data: dict[str, Any]
    refused: list[str]
    #: Upwork's own words about the refusal, for the logs and the security log.
    upwork_message: str | None = None
    #: Non-null fields Upwork answered null (and that were asked again without them).
    nulled: list[str] = field(default_factory=list)


#: Fields Upwork answers null together (a live client saw all three of the freelancer's
#: names null although the schema says ``String!``; borntojesus/upwork-crm
#: ``src/research/fetch-top-freelancers.ts``): one of them null, all three are dropped,
#: which saves a request per name (graphql-java reports one null per nulled parent).
NULL_TOGETHER: tuple[frozenset[str], ...] = (
    frozenset(
        {"FreelancerProfile.fullName", "FreelancerProfile.firstName", "FreelancerProfile.lastName"}
    ),
)


def _with_siblings(fields: Iterable[str]) -> list[str]:
    found = list(fields)
    for group in NULL_TOGETHER:
        if group & set(found):
            found += sorted(group - set(found))
    return found


async def fetch_granted(
    run: Callable[[str], Awaitable[dict[str, Any]]],
    query: Query,
    attempts: int = 3,
    known_refused: Iterable[str] = (),
    known_null: Iterable[str] = (),
) -> Fetched:
    """Run ``query``; when Upwork refuses fields for scope reasons, ask again without them.

    One request when the key grants everything, or when ``known_refused`` (what the key
    refused last time) and ``known_null`` (what came back null) are left out from the
    start; one more per new refusal (Upwork names every refused field of a query at
    once). Non-null fields Upwork answers null are dropped the same way (and listed in
    ``Fetched.nulled``, not as refused). Raises the scope error when a required field is
    refused, or when Upwork's error names nothing we could drop."""
    names = query.names()
    refused: list[str] = [f for f in dict.fromkeys(known_refused) if f in names]
    nulled: list[str] = [f for f in dict.fromkeys(known_null) if f in names]
    said: str | None = None
    current: Query | None = query.without([*refused, *nulled]) if refused or nulled else query
    for _ in range(attempts):
        assert current is not None
        try:
            data = await run(current.render())
        except UpworkNullFields as exc:
            # Non-null fields answered null took their parent with them: ask without
            # them (never a required field: then there is nothing to retry).
            new_nulls = [f for f in _with_siblings(exc.fields) if f not in nulled]
            following = query.without([*refused, *nulled, *new_nulls])
            if not new_nulls or following is None or query.is_required(new_nulls):
                if exc.data is not None:
                    return Fetched(exc.data, refused, said, nulled + new_nulls)
                raise
            nulled += new_nulls
            current = following
            continue
        except UpworkScopeError as exc:
            new = [f for f in exc.refused if f not in refused]
            said = exc.upwork_message
            if exc.data is not None and not query.is_required(new):
                return Fetched(exc.data, refused + new, said, nulled)  # the granted part came
            refused += new
            following = query.without([*refused, *nulled]) if new else None
            if following is None or following == current:
                raise
            current = following
            continue
        return Fetched(data, refused, said, nulled)
    raise UpworkScopeError(refused, said)
