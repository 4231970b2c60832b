"""Rendering pages: one Jinja2 environment with gettext, and the context every page shares
(the product's name, language, theme, time zone, formatting, the sandbox banner)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_time
from babel.numbers import UnknownCurrencyError, format_currency
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..config import Settings
from ..upwork.freelancer import Money
from .i18n import (
    LANGUAGE_CODES,
    LANGUAGE_NAMES,
    LOCALES,
    N_,
    Formatter,
    Preferences,
    gettext,
    ngettext,
    use_locale,
)

HERE = Path(__file__).parent

environment = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
environment.policies["ext.i18n.trimmed"] = True

#: The parts of the Upwork data a key may refuse (``upwork.queries.features_of``,
#: ``FreelancerView.unavailable``) in words, as msgids.
FREELANCER_PART_NAMES: dict[str, str] = {
    "name": N_("name"),
    "email": N_("email address"),
    "identity": N_("nickname and ids"),
    "account_photo": N_("account photo"),
    "profile_key": N_("profile key"),
    "organization": N_("organization"),
    "freelancer_profile": N_("the whole freelancer profile"),
    "photo": N_("photo"),
    "country": N_("country"),
    "title": N_("title"),
    "overview": N_("overview"),
    "profile_link": N_("link to the profile"),
    "rate": N_("hourly rate"),
    "location": N_("location"),
    "skills": N_("skills"),
    "languages": N_("languages"),
    "availability": N_("availability"),
    "job_success_score": N_("Job Success Score"),
    "badges": N_("badges"),
    "earnings": N_("earnings"),
    "work_history": N_("work history"),
    "education": N_("education"),
    "employment": N_("employment history"),
    "privacy_settings": N_("privacy settings"),
}
#: Upwork's Top Rated states we know, as msgids; any other state is shown as Upwork's text.
TALENT_BADGES: dict[str, str] = {
    "top_rated": N_("Top Rated"),
    "top_rated_plus": N_("Top Rated Plus"),
    "rising_talent": N_("Rising Talent"),
    "expert_vetted": N_("Expert-Vetted"),
}
#: Upwork's availability names we know, as msgids; others are shown as Upwork sends them.
AVAILABILITY_NAMES: dict[str, str] = {
    "available": N_("Available for work"),
    "not available": N_("Not available for work"),
}


def part_names(parts: list[str]) -> str:
    """Profile parts in words in the page's language, as a list ("rate, country")."""
    return ", ".join(gettext(FREELANCER_PART_NAMES.get(part, part)) for part in parts)


environment.filters["part_names"] = part_names
environment.globals.update(
    talent_badges=TALENT_BADGES,
    availability_names=AVAILABILITY_NAMES,
)

_YEAR = re.compile(r"^(\d{4})(?:-\d{2}(?:-\d{2})?)?$")


class PageFormatter(Formatter):
    """The shared formatter plus what the freelancer profile needs: money, a place's
    local time, countries and languages in the page's language, record years."""

    def money(self, value: Money | None) -> str:
        """Upwork's own rendering ("$65.00") when it sent one, else the amount and
        currency in the page's language."""
        if value is None:
            return ""
        if value.display:
            return value.display
        try:
            return format_currency(value.amount, value.currency, locale=self.babel_locale)
        except (UnknownCurrencyError, ValueError):
            return f"{value.amount} {value.currency}"

    def decimal(self, value: Decimal | int | float | None) -> str:
        return "" if value is None else self.number(value)  # type: ignore[arg-type]

    def local_time(self, zone_name: str | None, now: datetime | None = None) -> str:
        """The time now in ``zone_name`` (an IANA name), e.g. "14:05"; "" if unknown."""
        if not zone_name:
            return ""
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            return ""
        moment = (now or datetime.now(UTC)).astimezone(zone)
        return format_time(moment, "short", locale=self.babel_locale)

    def country(self, code: str | None, name: str | None) -> str:
        """The country's name in the page's language (from its ISO code), else Upwork's."""
        if code:
            translated = self.babel_locale.territories.get(code.upper())
            if isinstance(translated, str) and translated:
                return translated
        return name or ""

    def language(self, code: str | None, name: str) -> str:
        """A spoken language's name in the page's language, else Upwork's English name."""
        if code:
            translated = self.babel_locale.languages.get(code.lower())
            if isinstance(translated, str) and translated:
                return translated[:1].upper() + translated[1:]
        return name

    @staticmethod
    def year(value: str | None) -> str:
        """A record's start or end ("2019-04-01", "2019") as its year; other text as is."""
        if not value:
            return ""
        match = _YEAR.match(value)
        return match.group(1) if match else value


templates = Jinja2Templates(env=environment)


def preferences(request: Request) -> Preferences:
    cached = getattr(request.state, "ui_preferences", None)
    if cached is None:
        cached = Preferences.from_request(
            dict(request.cookies), request.headers.get("accept-language")
        )
        request.state.ui_preferences = cached
    return cached


#: The product's name when the app has no settings (APP_NAME's default).
DEFAULT_APP_NAME: str = Settings.model_fields["app_name"].default


def here(request: Request) -> str:
    """This page's path and query: where a preference change returns to."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    prefs = preferences(request)
    settings = getattr(request.app.state, "settings", None)
    page: dict[str, Any] = {
        "app_name": getattr(settings, "app_name", None) or DEFAULT_APP_NAME,
        "prefs": prefs,
        "lang": prefs.locale,
        "locales": LOCALES,
        "language_names": LANGUAGE_NAMES,
        "language_codes": LANGUAGE_CODES,
        "fmt": PageFormatter(prefs),
        "here": here(request),
        "sandbox_mode": bool(settings and settings.sandbox_mode),
        "csrf_token": None,
        "user": None,
        "error_message": None,
        "notice": None,
    }
    page.update(context or {})
    with use_locale(prefs.locale):
        response = templates.TemplateResponse(
            request, name, page, status_code=status_code, headers=headers
        )
    response.headers["Content-Language"] = prefs.locale
    response.headers["Vary"] = "Accept-Language, Cookie"
    # Pages carry personal data or the person's own settings: never cached.
    response.headers["Cache-Control"] = "no-store"
    return response


#: Error pages by status: (title, message), both msgids.
_UNUSABLE = N_("Some of what was sent could not be used. Please try again.")
ERROR_PAGES: dict[int, tuple[str, str]] = {
    400: (N_("That did not work"), _UNUSABLE),
    403: (N_("No access"), N_("You do not have access to this page.")),
    404: (
        N_("Page not found"),
        N_("There is no page at this address. It may have moved, or the link is mistyped."),
    ),
    405: (N_("Not available"), N_("This address cannot be used that way.")),
    413: (N_("Too much data"), N_("What was sent is larger than this service accepts.")),
    422: (N_("That did not work"), _UNUSABLE),
    429: (
        N_("Too many requests"),
        N_("You are going faster than we allow. Please wait a little and try again."),
    ),
    500: (
        N_("Something went wrong"),
        N_("Something went wrong on our side. It has been logged; please try again."),
    ),
    503: (
        N_("Temporarily unavailable"),
        N_("The service is temporarily unavailable. Please try again soon."),
    ),
}


def error_page(
    request: Request,
    status_code: int,
    headers: dict[str, str] | None = None,
    retry_after: int | None = None,
) -> Response:
    """A styled error page in the person's language."""
    fallback = 500 if status_code >= 500 else 400
    title, message = ERROR_PAGES.get(status_code, ERROR_PAGES[fallback])
    try:
        return render(
            request,
            "error.html",
            {
                "status": status_code,
                "title": title,
                "message": message,
                "retry_after": retry_after,
            },
            status_code=status_code,
            headers=headers,
        )
    except Exception:  # the page itself failed: a plain answer rather than none
        return HTMLResponse(
            f"<!doctype html><title>{status_code}</title><h1>{status_code}</h1>",
            status_code=status_code,
            headers=headers,
        )
