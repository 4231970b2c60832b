# ruff: noqa: RUF001 - Ukrainian text on purpose (Olena's profile)
"""The sandbox users' freelancer profiles, in the shapes of the schema's ``FreelancerProfile``.

A :class:`ProfileSpec` holds what is made up about a user's profile; :func:`graphql_profile`
turns it into the GraphQL answer for one request (absolute portrait URLs need the sandbox's
base URL, a future availability date needs "now"). Every value is invented; only the shapes
are Upwork's (see ``schema.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, GraphQLSchema, get_nullable_type

from . import schema

if TYPE_CHECKING:
    from .state import SandboxUser

PORTRAIT_SIZES = (32, 50, 100, 150, 500)
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


@dataclass(frozen=True)
class Place:
    city: str
    country: str
    iso2: str
    iso3: str
    country_id: str  # made up; Upwork's Country.id values are not known
    timezone: str
    zip: str | None = None


@dataclass(frozen=True)
class Aggregates:
    job_success_score: float | None
    top_rated_status: str | None
    total_hours: float
    hourly_jobs: int
    fixed_jobs: int
    total_feedback: float | None
    total_earnings: str | None  # a decimal string in the profile's currency
    top_rated_plus_status: str | None = None


@dataclass(frozen=True)
class Employment:
    company: str
    job_title: str
    start: str
    end: str | None
    city: str
    country: str
    role: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Education:
    institution: str
    area: str | None
    degree: str | None
    start: str | None
    end: str | None
    description: str | None = None


@dataclass(frozen=True)
class Availability:
    name: str  # "Available" or "Not available"
    capacity: str | None  # a FreelancerProfileAvailabilityCapacity value
    days_until_available: int | None = None  # availabilityDateTime: now + this many days
    created: str = "2021-03-01T10:00:00Z"


@dataclass(frozen=True)
class ProfileSpec:
    title: str
    overview: str
    rate: str  # hourly rate, a decimal string
    place: Place
    skills: tuple[tuple[str, str], ...]  # (preferredLabel, prettyName)
    languages: tuple[tuple[str, str], ...]  # (ISO 639-1 code, English name)
    availability: Availability
    aggregates: Aggregates
    employment: tuple[Employment, ...] = ()
    education: tuple[Education, ...] = ()
    currency: str = "USD"
    hide_earnings: bool = False
    hide_jss: bool = False
    expose_full_name: bool = True
    visibility: str = "PUBLIC"
    profile_state: str = "ACCEPTED"


def money(raw: str, currency: str) -> dict[str, str]:
    symbol = _SYMBOLS.get(currency)
    amount = f"{Decimal(raw):,.2f}"
    return {
        "rawValue": raw,
        "currency": currency,
        "displayValue": f"{symbol}{amount}" if symbol else f"{amount} {currency}",
    }


def _number_id(*parts: str) -> str:
    """A stable, Upwork-looking numeric id made from the parts."""
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return str(10**18 + int(digest[:15], 16) % (9 * 10**17))


def portrait_urls(photo_url: str) -> dict[str, str]:
    """``Portrait``: the user's portrait at each size (``portrait`` is the plain URL)."""
    urls = {f"portrait{size}": f"{photo_url}?size={size}" for size in PORTRAIT_SIZES}
    return {"portrait": photo_url, **urls}


def _location(place: Place) -> dict[str, Any]:
    return {
        "countryName": place.country,
        "cityName": place.city,
        "zip": place.zip,
        "timezone": place.timezone,
        "street": None,  # Upwork shows no freelancer's street; kept null
    }


def _country(place: Place) -> dict[str, Any]:
    return {
        "id": place.country_id,
        "name": place.country,
        "twoLetterAbbreviation": place.iso2,
        "threeLetterAbbreviation": place.iso3,
    }


def _skills(user_id: str, skills: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    edges = [
        {
            "node": {
                "id": _number_id(user_id, "skill", str(n)),
                "ontologyId": _number_id("ontology", label),
                "preferredLabel": label,
                "prettyName": pretty,
            }
        }
        for n, (label, pretty) in enumerate(skills)
    ]
    return {"edges": edges}


def _languages(user_id: str, languages: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    edges = [
        {
            "node": {
                "id": _number_id(user_id, "language", code),
                "language": {"iso639Code": code, "active": True, "englishName": english},
                "verified": n == 0,
            }
        }
        for n, (code, english) in enumerate(languages)
    ]
    return {"edges": edges}


def iso_z(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the second."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _availability(user_id: str, availability: Availability, now: datetime) -> dict[str, Any]:
    days = availability.days_until_available
    return {
        "id": _number_id(user_id, "availability"),
        "capacity": availability.capacity,
        "availabilityDateTime": None if days is None else iso_z(now + timedelta(days=days)),
        "name": availability.name,
        "createdDateTime": availability.created,
    }


def _aggregates(spec: ProfileSpec) -> dict[str, Any]:
    agg = spec.aggregates
    return {
        "jobSuccessScore": agg.job_success_score,
        "topRatedStatus": agg.top_rated_status,
        "topRatedPlusStatus": agg.top_rated_plus_status,
        "totalHours": agg.total_hours,
        "totalHourlyJobs": agg.hourly_jobs,
        "totalFixedJobs": agg.fixed_jobs,
        "totalFeedback": agg.total_feedback,
        "totalEarnings": None
        if agg.total_earnings is None
        else money(agg.total_earnings, spec.currency),
    }


def _employment(user_id: str, records: tuple[Employment, ...]) -> list[dict[str, Any]]:
    return [
        {
            "id": _number_id(user_id, "employment", str(n)),
            "companyName": r.company,
            "jobTitle": r.job_title,
            "role": r.role,
            "startDate": r.start,
            "endDate": r.end,
            "description": r.description,
            "city": r.city,
            "country": r.country,
        }
        for n, r in enumerate(records)
    ]


def _education(user_id: str, records: tuple[Education, ...]) -> list[dict[str, Any]]:
    return [
        {
            "id": _number_id(user_id, "education", str(n)),
            "institutionName": r.institution,
            "areaOfStudy": r.area,
            "degree": r.degree,
            "startDate": r.start,
            "endDate": r.end,
            "description": r.description,
        }
        for n, r in enumerate(records)
    ]


def split_name(name: str) -> tuple[str, str]:
    first, _, last = name.strip().partition(" ")
    return first, last.strip()


def _personal_data(
    user: SandboxUser, spec: ProfileSpec, portrait: dict[str, str]
) -> dict[str, Any]:
    first, last = split_name(user.name)
    return {
        "firstName": first,
        "lastName": last,
        "portrait": portrait,
        "title": spec.title,
        "description": spec.overview,
        "address": _location(spec.place),
        "chargeRate": money(spec.rate, spec.currency),
        "profileUrl": f"https://www.upwork.com/freelancers/{user.ciphertext}",
        "profileState": spec.profile_state,
    }


def _preferences(spec: ProfileSpec) -> dict[str, Any]:
    return {
        "visibilityLevel": spec.visibility,
        "hideEarnings": spec.hide_earnings,
        "exposeFullName": spec.expose_full_name,
        "hideJss": spec.hide_jss,
    }


def graphql_profile(
    user: SandboxUser, base_url: str, now: datetime | None = None
) -> dict[str, Any] | None:
    """The user's ``FreelancerProfile`` as GraphQL answers it, or None without one."""
    spec = user.profile
    if spec is None:
        return None
    now = now or datetime.now(UTC)
    portrait = portrait_urls(user.photo_url(base_url))
    first, last = split_name(user.name)
    return {
        "userDetails": user.graphql_generic_user(base_url),
        "fullName": f"{first} {last}".strip(),
        "firstName": first,
        "lastName": last,
        "countryDetails": _country(spec.place),
        "portrait": portrait,
        "personalData": _personal_data(user, spec, portrait),
        "userPreferences": _preferences(spec),
        "skills": _skills(user.id, spec.skills),
        "languages": _languages(user.id, spec.languages),
        "availability": _availability(user.id, spec.availability, now),
        "aggregates": _aggregates(spec),
        "educationRecords": _education(user.id, spec.education),
        "employmentRecords": _employment(user.id, spec.employment),
    }


# ----- the made-up users' profiles ---------------------------------------------------------

ALEX = ProfileSpec(
    title="Full-stack Python developer (FastAPI, PostgreSQL)",
    overview=(
        "Hi, I'm Alex. For nine years I have built web back ends in Python: APIs, data "
        "pipelines and the dashboards on top of them.\n"
        "\n"
        "What I do best:\n"
        "- FastAPI and Django services, typed and tested\n"
        "- PostgreSQL schema design, query tuning and migrations\n"
        "- integrations with payment, CRM and messaging APIs\n"
        "\n"
        "I work in small, reviewed steps and write down what I did. Clients in Europe and "
        "the US; I overlap with US East Coast mornings.\n"
        "\n"
        "Send me a short description of your project and I will answer within a day."
    ),
    rate="65.00",
    place=Place("Lisbon", "Portugal", "PT", "PRT", "177", "Europe/Lisbon", "1100-148"),
    skills=(
        ("Python", "Python"),
        ("FastAPI", "FastAPI"),
        ("PostgreSQL", "PostgreSQL"),
        ("Django", "Django"),
        ("REST API", "REST API"),
        ("SQLAlchemy", "SQLAlchemy"),
        ("Docker", "Docker"),
        ("API Integration", "API Integration"),
        ("TypeScript", "TypeScript"),
        ("Amazon Web Services", "Amazon Web Services"),
    ),
    languages=(("en", "English"), ("es", "Spanish")),
    availability=Availability("Available", "fullTime"),
    aggregates=Aggregates(
        job_success_score=98.0,
        top_rated_status="top_rated",
        total_hours=3412.5,
        hourly_jobs=41,
        fixed_jobs=17,
        total_feedback=4.95,
        total_earnings="48250.00",
    ),
    employment=(
        Employment(
            company="Tidewater Analytics",
            job_title="Senior Backend Engineer",
            start="2019-04-01",
            end=None,
            city="Lisbon",
            country="Portugal",
            role="Backend lead",
            description="Payments and reporting APIs in FastAPI on PostgreSQL.",
        ),
        Employment(
            company="Northwind Software",
            job_title="Python Developer",
            start="2015-09-01",
            end="2019-03-31",
            city="Porto",
            country="Portugal",
            description="Django applications for logistics customers.",
        ),
    ),
    education=(
        Education(
            institution="Universidade de Lisboa",
            area="Computer Science",
            degree="Master of Science (MSc)",
            start="2013",
            end="2015",
        ),
    ),
)

OLENA = ProfileSpec(
    title="Дизайнерка інтерфейсів і фронтенд-розробниця (Figma, React)",
    overview=(
        "Вітаю! Я Олена, дизайнерка інтерфейсів із Києва. Понад сім років я проєктую "
        "вебзастосунки та мобільні застосунки для стартапів і невеликих команд.\n"
        "\n"
        "Що я пропоную:\n"
        "• дослідження користувачів і прототипи у Figma;\n"
        "• дизайн-системи, які легко підтримувати;\n"
        "• верстку на React і TypeScript.\n"
        "\n"
        "Працюю українською та англійською. Зараз я завершую великий проєкт, тож нові "
        "замовлення беру приблизно за два тижні.\n"
        "\n"
        "Напишіть мені — обговоримо ваш задум!"
    ),
    rate="40.00",
    place=Place("Kyiv", "Ukraine", "UA", "UKR", "226", "Europe/Kyiv", "01001"),
    skills=(
        ("User Interface Design", "UI Design"),
        ("User Experience Design", "UX Design"),
        ("Figma", "Figma"),
        ("React", "React"),
        ("TypeScript", "TypeScript"),
        ("Prototyping", "Prototyping"),
        ("Design System", "Design System"),
        ("Mobile App Design", "Mobile App Design"),
    ),
    languages=(("uk", "Ukrainian"), ("en", "English")),
    availability=Availability("Not available", "none", days_until_available=14),
    aggregates=Aggregates(
        job_success_score=100.0,
        top_rated_status="top_rated_plus",
        total_hours=5120.0,
        hourly_jobs=63,
        fixed_jobs=29,
        total_feedback=5.0,
        total_earnings="112400.00",
    ),
    employment=(
        Employment(
            company="Студія Олени",
            job_title="Засновниця, дизайнерка",
            start="2020-01-01",
            end=None,
            city="Київ",
            country="Україна",
        ),
    ),
    education=(
        Education(
            institution="Київський політехнічний інститут",
            area="Комп'ютерні науки",
            degree="Бакалавр",
            start="2010",
            end="2014",
        ),
    ),
)

SAM = ProfileSpec(
    title="Bookkeeping and QuickBooks clean-up",
    overview="Accurate books, monthly reports, no surprises at tax time.",
    rate="30.00",
    place=Place("Toronto", "Canada", "CA", "CAN", "38", "America/Toronto"),
    skills=(
        ("Bookkeeping", "Bookkeeping"),
        ("QuickBooks Online", "QuickBooks Online"),
        ("Accounts Payable", "Accounts Payable"),
        ("Financial Reporting", "Financial Reporting"),
        ("Microsoft Excel", "Microsoft Excel"),
        ("Xero", "Xero"),
        ("Payroll Accounting", "Payroll Accounting"),
        ("Bank Reconciliation", "Bank Reconciliation"),
    ),
    languages=(("en", "English"), ("fr", "French")),
    availability=Availability("Available", "partTime"),
    # Upwork still sends the score and the earnings; the product must not show them.
    aggregates=Aggregates(
        job_success_score=87.0,
        top_rated_status=None,
        total_hours=860.0,
        hourly_jobs=12,
        fixed_jobs=5,
        total_feedback=4.6,
        total_earnings="21900.00",
    ),
    hide_earnings=True,
    hide_jss=True,
    expose_full_name=False,
)

#: Overview of the HTML user: exactly this many characters (code points, ``len``).
HTML_OVERVIEW_LENGTH = 5000


def _html_overview() -> str:
    body = (
        "<script>alert(1)</script>\n"
        "<b>Bold claims</b> &amp; <i>italic</i> promises &lt;not a tag&gt;\n"
        "\n"
        "\n"
        '<img src=x onerror=alert(1)> <a href="javascript:alert(1)">click</a>\n'
        "Emoji: 👩‍💻 👨‍👩‍👧‍👦 👍🏽 🇺🇦 🇵🇹 ❤️ 🚀\r\n"
        "Tabs\tand  double  spaces, an RTL word: مرحبا, CJK: 你好.\n"
        "\n"
        "<style>body{display:none}</style><iframe src=//evil.example></iframe>\n"
        "\n"
    )
    filler = "Lorem ipsum <u>dolor</u> sit amet &amp; consectetur 🙂.\n" * 120
    text = body + filler
    assert len(body) < HTML_OVERVIEW_LENGTH <= len(text)
    # Cut inside plain ASCII so no multi-codepoint emoji is split.
    cut = text[:HTML_OVERVIEW_LENGTH]
    return cut if cut[-1].isascii() else cut[:-1] + "."


HTML = ProfileSpec(
    title='<b>Top</b> <script>alert("title")</script> developer &amp; designer 👩‍💻',
    overview=_html_overview(),
    rate="15.50",
    place=Place("Kyiv", "Ukraine", "UA", "UKR", "226", "Europe/Kyiv"),
    skills=(
        ("JavaScript", "JavaScript"),
        ("javascript", "javascript"),
        ("<b>HTML</b>", "<b>HTML</b>"),
        ("CSS & SCSS", "CSS &amp; SCSS"),
        ("Web Design", "Web Design"),
    ),
    languages=(("en", "English"), ("uk", "Ukrainian")),
    availability=Availability("Available", "lessThen"),
    aggregates=Aggregates(
        job_success_score=None,  # a new freelancer has no score yet
        top_rated_status="rising_talent",
        total_hours=0.0,
        hourly_jobs=0,
        fixed_jobs=0,
        total_feedback=None,
        total_earnings="0.00",
    ),
    profile_state="UNDER_REVIEW",
)


PROFILE_NOT_FOUND = "Freelancer profile not found"


def by_profile_key(
    users: Iterable[SandboxUser], base_url: str, now: datetime | None = None
) -> Callable[..., dict[str, Any]]:
    """The resolver of ``Query.freelancerProfileByProfileKey``: the profile of the user whose
    ciphertext is the key; a GraphQL error for an unknown key or a user without a profile
    (the field is non-null, so the whole ``data`` becomes null)."""
    known = list(users)

    def resolve(_info: Any, profileKey: str) -> dict[str, Any]:
        user = next((u for u in known if u.ciphertext == profileKey), None)
        profile = None if user is None else graphql_profile(user, base_url, now)
        if profile is None:
            raise GraphQLError(PROFILE_NOT_FOUND)
        return profile

    return resolve


# ----- a null where the schema promises a value ----------------------------------------------


def with_nulls(user: dict[str, Any], nulls: Iterable[str] | None) -> dict[str, Any]:
    """``user`` with the named FreelancerProfile fields answered null (the fault
    ``profile_nulls``): graphql-core then spreads the null to ``freelancerProfile``."""
    names = list(nulls or ())
    resolve = user.get("freelancerProfile")
    if not names or not callable(resolve):
        return user

    def nulled(info: Any) -> dict[str, Any] | None:
        profile = resolve(info)
        return None if profile is None else {**profile, **dict.fromkeys(names)}

    return {**user, "freelancerProfile": nulled}


_CORE_NULL = "Cannot return null for non-nullable field "


def as_graphql_java(error: GraphQLError) -> dict[str, Any]:
    """The error as Upwork's server (graphql-java) words it. Only a non-null violation
    differs from graphql-core's wording: graphql-java's ``NonNullableFieldWasNullError``
    says where and within which parent type, with the classification
    ``NullValueInNonNullableField``."""
    formatted = dict(error.formatted)
    message = error.message
    if not message.startswith(_CORE_NULL):
        return formatted
    parent, _, name = message[len(_CORE_NULL) :].rstrip(".").partition(".")
    field_type = _schema().get_type(parent)
    type_name = "?"
    if field_type is not None and hasattr(field_type, "fields") and name in field_type.fields:
        type_name = str(get_nullable_type(field_type.fields[name].type))
    path = ""
    for step in error.path or ():
        path += f"[{step}]" if isinstance(step, int) else f"/{step}"
    formatted["message"] = (
        f"The field at path '{path}' was declared as a non null type, but the code involved "
        "in retrieving data has wrongly returned a null value.  The graphql specification "
        "requires that the parent field be set to null, or if that is non nullable that it "
        "bubble up null to its parent and so on. The non-nullable type is "
        f"'{type_name}' within parent type '{parent}'"
    )
    formatted["extensions"] = {"classification": "NullValueInNonNullableField"}
    return formatted


@cache
def _schema() -> GraphQLSchema:
    return schema.build()
