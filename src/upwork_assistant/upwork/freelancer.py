"""The freelancer's Upwork profile, validated before it is kept (AUTH-REG-002, AUTH-REG-005).

What clients see of a freelancer on Upwork (title, overview, rate, skills, location, photo,
availability, Job Success Score, history) comes from ``user { freelancerProfile { ... } }``
(Upwork's own Power BI connector asks ``user { id freelancerProfile { fullName
countryDetails { name } } }``; the field list is Upwork's API reference as extracted in
muhammedaksam/upwork-node ``src/generated/generated-types.ts``).

Every value is checked on its own, and a value we cannot use is left out (and named in
:attr:`FreelancerProfile.invalid`) rather than failing the sync: a bad rate must not cost
the freelancer their skills. The rules:

- text is Unicode NFC with control and bidi-override characters removed; one-line text has
  its whitespace collapsed, the overview keeps its line breaks; HTML stays text (templates
  escape it); each has a length limit, beyond which it is cut at a character boundary;
- money is a :class:`~decimal.Decimal` and an ISO 4217 currency code, never a float;
- links are https only: the profile link on Upwork's own site, the portrait only on
  Upwork's image hosts (``UPWORK_IMAGE_HOSTS``);
- names Upwork gives to states (availability, Top Rated status) are kept as text, known
  or not, so a new state Upwork adds shows rather than breaks;
- a freelancer who hides their earnings or Job Success Score on Upwork
  (``userPreferences { hideEarnings hideJss }``) has them dropped here, not just hidden
  on the page.
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

TITLE_MAX = 200
OVERVIEW_MAX = 10_000  # Upwork allows 5,000 characters; room for entities and emoji
SHORT_MAX = 120
LIST_MAX = 100  # skills, languages, records: at most this many of each
URL_MAX = 2048
MONEY_MAX = Decimal("1000000000")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
MONEY_RE = re.compile(r"^\d{1,12}(\.\d{1,6})?$")
COUNTRY_CODE_RE = re.compile(r"^[A-Z]{2}$")
LANGUAGE_CODE_RE = re.compile(r"^[a-z]{2,3}$")
_UNSAFE = re.compile(r"[\s\"'<>\\]")
#: Control characters, the zero-width space and bidi overrides/isolates (which can make
#: text read differently from what it is). Zero-width joiners stay: emoji such as 👩‍💻
#: and many scripts are built with them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u202a-\u202e\u2066-\u2069]")
#: Where Upwork serves portraits: ``www.upwork.com/profile-portraits/...`` today, and the
#: ``odesk-prod-portraits`` bucket in older answers (both seen in published profile links).
DEFAULT_IMAGE_HOSTS = ("www.upwork.com", "odesk-prod-portraits.s3.amazonaws.com")
#: Where a freelancer's public profile lives.
PROFILE_HOSTS = ("www.upwork.com", "upwork.com")


# ----- value rules ------------------------------------------------------------------------


def one_line(value: Any, limit: int = SHORT_MAX) -> str | None:
    """Text on one line: NFC, no control characters, whitespace collapsed, cut at
    ``limit``; None when it is not text or nothing is left."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    cleaned = " ".join(_CONTROL.sub("", unicodedata.normalize("NFC", value)).split())
    return _cut(cleaned, limit) or None


def multi_line(value: Any, limit: int = OVERVIEW_MAX) -> str | None:
    """Text whose line breaks matter (the overview): each line cleaned like
    :func:`one_line`, at most one empty line in a row, cut at ``limit``."""
    if not isinstance(value, str):
        return None
    text = unicodedata.normalize("NFC", value).replace("\r\n", "\n").replace("\r", "\n")
    lines = [" ".join(_CONTROL.sub("", line).split()) for line in text.split("\n")]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    return _cut("\n".join(kept).strip(), limit) or None


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def money(value: Any) -> Money | None:
    """``{rawValue, currency, displayValue}`` to a :class:`Money`; None when unusable."""
    if not isinstance(value, dict):
        return None
    raw, currency = value.get("rawValue"), value.get("currency")
    # Upwork sends money as a decimal string ("1.23"); floats, exponents, signs refused.
    text = str(raw).strip() if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    if not MONEY_RE.fullmatch(text):
        return None
    amount = Decimal(text)
    if amount >= MONEY_MAX:
        return None
    code = currency.strip().upper() if isinstance(currency, str) else ""
    if not CURRENCY_RE.fullmatch(code):
        return None
    return Money(amount=amount, currency=code, display=one_line(value.get("displayValue"), 40))


def https_url(value: Any, hosts: Iterable[str]) -> str | None:
    """An https URL on one of ``hosts`` (``*.example.com`` allowed), else None. The
    sandbox's own origin may be in ``hosts`` as ``http://host:port``."""
    if not isinstance(value, str) or len(value) > URL_MAX:
        return None
    url: str = value.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.username or parts.password or not parts.hostname or _UNSAFE.search(url):
        return None
    host = parts.hostname.lower()
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    for allowed in hosts:
        if allowed.startswith(("http://", "https://")):
            if origin == allowed.rstrip("/"):
                return url
        elif parts.scheme == "https" and (
            host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:]))
        ):
            return url
    return None


def count(value: Any, limit: int = 10_000_000) -> int | None:
    """A non-negative whole number (numbers may come as strings)."""
    number = decimal(value)
    if number is None or number != number.to_integral_value() or number > limit:
        return None
    return int(number)


def percent(value: Any) -> int | None:
    """A score of 0..100 (Upwork sends the Job Success Score as a Float), as a whole
    number, as Upwork shows it."""
    number = decimal(value)
    if number is None or number > 100:
        return None
    return int(number.to_integral_value())


def decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def timestamp(value: Any) -> datetime | None:
    """An ISO-8601 time (``Z`` or an offset; a bare one is UTC), or epoch milliseconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def country(value: Any) -> str | None:
    """An ISO 3166 two-letter country code, upper case."""
    code = value.strip().upper() if isinstance(value, str) else ""
    return code if COUNTRY_CODE_RE.fullmatch(code) else None


def timezone_name(value: Any) -> str | None:
    """An IANA time zone name we know (so the page can show local time)."""
    name = one_line(value, 64)
    if name is None:
        return None
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
    return name


def edges(value: Any, limit: int = LIST_MAX) -> list[Any]:
    """The nodes of a GraphQL connection (``{edges: [{node}]}``) or a plain list."""
    if isinstance(value, dict):
        value = value.get("edges")
    if not isinstance(value, list):
        return []
    nodes = [e.get("node") if isinstance(e, dict) and "node" in e else e for e in value]
    return [n for n in nodes if isinstance(n, dict)][:limit]


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


# ----- the kept profile ---------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Money(_Frozen):
    amount: Decimal
    currency: str
    #: Upwork's own rendering ("$45.00"), when sent.
    display: str | None = None


class Language(_Frozen):
    name: str
    code: str | None = None


class Availability(_Frozen):
    #: Upwork's name for the state, kept as text ("Available", "Not available", ...).
    status: str | None = None
    #: When a freelancer who is not available now will be again.
    available_from: datetime | None = None


class Stats(_Frozen):
    job_success_score: int | None = None  # 0..100; None when hidden or not yet earned
    top_rated_status: str | None = None  # kept as text ("top_rated", "top_rated_plus", ...)
    total_hours: Decimal | None = None
    total_hourly_jobs: int | None = None
    total_fixed_jobs: int | None = None
    total_feedback: Decimal | None = None  # the feedback score, 0..5
    total_earnings: Money | None = None  # None when hidden


class Education(_Frozen):
    school: str
    degree: str | None = None
    area_of_study: str | None = None
    start: str | None = None  # years or dates as Upwork sends them, as text
    end: str | None = None


class Employment(_Frozen):
    company: str
    role: str | None = None
    start: str | None = None
    end: str | None = None  # None: the freelancer still works there


class FreelancerProfile(_Frozen):
    full_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    overview: str | None = None
    profile_url: str | None = None
    portrait_100: str | None = None
    portrait_500: str | None = None
    rate: Money | None = None
    country: str | None = None
    country_code: str | None = None
    city: str | None = None
    timezone: str | None = None
    skills: list[str] = Field(default_factory=list)
    languages: list[Language] = Field(default_factory=list)
    availability: Availability | None = None
    stats: Stats | None = None
    education: list[Education] = Field(default_factory=list)
    employment: list[Employment] = Field(default_factory=list)
    hide_earnings: bool = False
    hide_jss: bool = False
    #: Values Upwork sent that broke a rule and were left out, by name.
    invalid: list[str] = Field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What a profile-change record compares: title, rate and skills."""
        return {
            "title": self.title,
            "rate": None if self.rate is None else [str(self.rate.amount), self.rate.currency],
            "skills": sorted(self.skills),
        }


def changed_parts(before: FreelancerProfile | None, after: FreelancerProfile) -> list[str]:
    """Which of title, rate and skills differ (nothing when there was no profile before)."""
    if before is None:
        return []
    old, new = before.summary(), after.summary()
    return [key for key in old if old[key] != new[key]]


def parse_freelancer(
    data: Any, image_hosts: Iterable[str] = DEFAULT_IMAGE_HOSTS
) -> FreelancerProfile | None:
    """``data`` is ``user.freelancerProfile`` as Upwork sent it; None when the account has
    no freelancer profile (a client's account: a normal case)."""
    if not isinstance(data, dict):
        return None
    hosts = tuple(image_hosts)
    invalid: list[str] = []

    def keep(name: str, raw: Any, rule: Callable[[Any], Any]) -> Any:
        value = rule(raw)
        if value is None and raw not in (None, "", [], {}):
            invalid.append(name)
        return value

    personal = _get(data, "personalData")
    address = _get(personal, "address")
    prefs = _get(data, "userPreferences")
    hide_earnings = _get(prefs, "hideEarnings") is True
    hide_jss = _get(prefs, "hideJss") is True
    country_code = keep(
        "country_code",
        _get(data, "countryDetails", "twoLetterAbbreviation"),
        lambda v: (
            v.strip().upper()
            if isinstance(v, str) and COUNTRY_CODE_RE.fullmatch(v.strip().upper())
            else None
        ),
    )
    profile = FreelancerProfile(
        full_name=keep("full_name", data.get("fullName"), one_line),
        first_name=keep("first_name", data.get("firstName"), one_line),
        last_name=keep("last_name", data.get("lastName"), one_line),
        title=keep("title", _get(personal, "title"), lambda v: one_line(v, TITLE_MAX)),
        overview=keep("overview", _get(personal, "description"), multi_line),
        profile_url=keep(
            "profile_url", _get(personal, "profileUrl"), lambda v: https_url(v, PROFILE_HOSTS)
        ),
        portrait_100=keep(
            "portrait_100", _get(data, "portrait", "portrait100"), lambda v: https_url(v, hosts)
        ),
        portrait_500=keep(
            "portrait_500", _get(data, "portrait", "portrait500"), lambda v: https_url(v, hosts)
        ),
        rate=keep("rate", _get(personal, "chargeRate"), money),
        country=keep(
            "country",
            _get(address, "countryName") or _get(data, "countryDetails", "name"),
            one_line,
        ),
        country_code=country_code,
        city=keep("city", _get(address, "cityName"), one_line),
        timezone=keep("timezone", _get(address, "timezone"), timezone_name),
        skills=_skills(data.get("skills")),
        languages=_languages(data.get("languages")),
        availability=_availability(data.get("availability"), invalid),
        stats=_stats(data.get("aggregates"), hide_earnings, hide_jss, invalid),
        education=_education(data.get("educationRecords")),
        employment=_employment(data.get("employmentRecords")),
        hide_earnings=hide_earnings,
        hide_jss=hide_jss,
        invalid=invalid,
    )
    return profile


def _skills(value: Any) -> list[str]:
    found: dict[str, str] = {}
    for node in edges(value):
        label = one_line(node.get("prettyName"), 100) or one_line(node.get("preferredLabel"), 100)
        if label and label.casefold() not in found:
            found[label.casefold()] = label
    return list(found.values())


def _languages(value: Any) -> list[Language]:
    found: dict[str, Language] = {}
    for node in edges(value):
        language = node.get("language") if isinstance(node.get("language"), dict) else node
        name = one_line(_get(language, "englishName"), 60)
        if not name or name.casefold() in found:
            continue
        code = _get(language, "iso639Code")
        code = code.strip().lower() if isinstance(code, str) else None
        found[name.casefold()] = Language(
            name=name, code=code if code and LANGUAGE_CODE_RE.fullmatch(code) else None
        )
    return list(found.values())


def _availability(value: Any, invalid: list[str]) -> Availability | None:
    if not isinstance(value, dict):
        return None
    status = one_line(value.get("name"), 60)
    when_raw = value.get("availabilityDateTime")
    when = timestamp(when_raw)
    if when is None and when_raw not in (None, ""):
        invalid.append("availability_date")
    return Availability(status=status, available_from=when) if status or when else None


def _stats(value: Any, hide_earnings: bool, hide_jss: bool, invalid: list[str]) -> Stats | None:
    if not isinstance(value, dict):
        return None
    jss = None if hide_jss else percent(value.get("jobSuccessScore"))
    if not hide_jss and jss is None and value.get("jobSuccessScore") not in (None, ""):
        invalid.append("job_success_score")
    earnings = None if hide_earnings else money(value.get("totalEarnings"))
    if not hide_earnings and earnings is None and value.get("totalEarnings") not in (None, {}):
        invalid.append("total_earnings")
    feedback = decimal(value.get("totalFeedback"))
    stats = Stats(
        job_success_score=jss,
        top_rated_status=one_line(value.get("topRatedStatus"), 60),
        total_hours=decimal(value.get("totalHours")),
        total_hourly_jobs=count(value.get("totalHourlyJobs")),
        total_fixed_jobs=count(value.get("totalFixedJobs")),
        total_feedback=feedback if feedback is not None and feedback <= 5 else None,
        total_earnings=earnings,
    )
    return stats if stats != Stats() else None


def _education(value: Any) -> list[Education]:
    records = []
    for node in edges(value):
        school = one_line(node.get("institutionName"), 200)
        if school:
            records.append(
                Education(
                    school=school,
                    degree=one_line(node.get("degree"), 200),
                    area_of_study=one_line(node.get("areaOfStudy"), 200),
                    start=one_line(node.get("startDate"), 40),
                    end=one_line(node.get("endDate"), 40),
                )
            )
    return records


def _employment(value: Any) -> list[Employment]:
    records = []
    for node in edges(value):
        company = one_line(node.get("companyName"), 200)
        if company:
            records.append(
                Employment(
                    company=company,
                    role=one_line(node.get("jobTitle"), 200),
                    start=one_line(node.get("startDate"), 40),
                    end=one_line(node.get("endDate"), 40),
                )
            )
    return records


# ----- what the product shows -----------------------------------------------------------

FreelancerState = Literal["present", "none", "not_granted", "not_fetched"]


class FreelancerView(_Frozen):
    """The freelancer profile as the dashboard and ``GET /api/upwork/profile`` give it.

    ``state``: ``present``; ``none`` (Upwork says the account has no freelancer profile:
    a client's account); ``not_granted`` (this installation's API key lacks the Freelancer
    Profile permission); ``not_fetched`` (not fetched yet, or purged after 24 hours and
    being fetched again)."""

    state: FreelancerState
    fetched_at: datetime | None = None
    #: When this copy must be gone (Upwork's terms: 24 hours after the fetch).
    expires_at: datetime | None = None
    #: Parts of the profile the API key's scopes refuse ("freelancer_profile" for all).
    unavailable: list[str] = Field(default_factory=list)
    #: Parts the freelancer hides on Upwork, so not kept or shown here.
    hidden: list[str] = Field(default_factory=list)
    profile: FreelancerProfile | None = None


def freelancer_view(
    row: tuple[datetime, bool, dict[str, Any] | None] | None,
    unavailable: list[str],
    ttl: timedelta,
) -> FreelancerView:
    """``row``: the kept copy (fetched at, has a profile, data), None when there is none;
    ``unavailable``: the profile's parts the key refused at the last fetch."""
    if row is None:
        state: FreelancerState = (
            "not_granted" if "freelancer_profile" in unavailable else "not_fetched"
        )
        return FreelancerView(state=state, unavailable=unavailable)
    fetched_at, has_profile, data = row
    profile = FreelancerProfile.model_validate(data) if has_profile and data else None
    hidden = []
    if profile is not None and profile.hide_earnings:
        hidden.append("earnings")
    if profile is not None and profile.hide_jss:
        hidden.append("job_success_score")
    return FreelancerView(
        state="present" if profile is not None else "none",
        fetched_at=fetched_at,
        expires_at=fetched_at + ttl,
        unavailable=unavailable,
        hidden=hidden,
        profile=profile,
    )
