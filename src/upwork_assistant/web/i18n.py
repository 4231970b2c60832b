"""Languages, themes and time zones of the pages.

Every string a person reads is English in the source and translated through gettext
catalogs (``locales/<lang>/LC_MESSAGES/messages.po``, compiled in memory when first used,
so no binary file lives in git). The language is the user's choice (a cookie, remembered
for a year), else the best match of the browser's ``Accept-Language``, else English.

``python -m upwork_assistant.web.i18n`` (``make messages``) collects every message (the
templates, the marked strings of the web package and the reason catalogue of the API) and
brings the catalogs up to date; tests/test_i18n.py fails while any message is untranslated.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date, format_datetime, format_time
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations
from markupsafe import Markup

HERE = Path(__file__).parent
LOCALE_DIR = HERE / "locales"
DOMAIN = "messages"
#: The catalogs' project: the package's name. The product's display name is a setting
#: (APP_NAME) and reaches messages as the ``%(app)s`` placeholder.
PROJECT = "upwork-assistant"

#: Languages of the interface, the first is the source language and the fallback.
LOCALES: tuple[str, ...] = ("en", "uk")
DEFAULT_LOCALE = LOCALES[0]
LANGUAGE_NAMES = {"en": "English", "uk": "Українська"}
LANGUAGE_CODES = {"en": "EN", "uk": "УК"}  # noqa: RUF001 - Cyrillic on purpose: short labels
THEMES = ("light", "dark")

LANG_COOKIE = "lang"
THEME_COOKIE = "theme"
TZ_COOKIE = "tz"
PREFERENCE_MAX_AGE = 365 * 24 * 3600


def N_(message: str) -> str:
    """Marks a message for the catalogs; it is translated where it is shown."""
    return message


@cache
def translations(locale: str) -> NullTranslations:
    if locale == DEFAULT_LOCALE or locale not in LOCALES:
        return NullTranslations()
    with (LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as po:
        catalog = read_po(po, locale=locale, domain=DOMAIN)
    mo = BytesIO()
    write_mo(mo, catalog, use_fuzzy=False)
    mo.seek(0)
    return Translations(mo, domain=DOMAIN)


_locale: ContextVar[str] = ContextVar("ui_locale", default=DEFAULT_LOCALE)


@contextlib.contextmanager
def use_locale(locale: str) -> Iterator[None]:
    token = _locale.set(locale if locale in LOCALES else DEFAULT_LOCALE)
    try:
        yield
    finally:
        _locale.reset(token)


def gettext(message: str) -> str:
    return translations(_locale.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_locale.get()).ngettext(singular, plural, n)


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags of an Accept-Language header, best first (q=0 means "not this")."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        tag = tag.strip()
        if tag and 0 < quality <= 1:
            ranked.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(chosen: str | None, accept_language: str | None) -> str:
    """The user's own choice, else the first supported language the browser asks for."""
    if chosen in LOCALES:
        return chosen
    for tag in parse_accept_language(accept_language):
        primary = tag.split("-")[0].split("_")[0].lower()
        if primary in LOCALES:
            return primary
        if primary == "*":
            break
    return DEFAULT_LOCALE


def zone(name: str | None) -> ZoneInfo | None:
    """An IANA time zone named by the browser, or None when unknown or malformed."""
    if not name or len(name) > 64 or ".." in name or name.startswith("/"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True)
class Preferences:
    """What the person chose (or their browser told us) for this request."""

    locale: str
    theme: str | None  # None: follow the system setting
    tz_name: str | None  # None: not known yet (the page's script reports it)

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.tz_name) or ZoneInfo("UTC")

    @classmethod
    def from_request(cls, cookies: dict[str, str], accept_language: str | None) -> Preferences:
        theme = cookies.get(THEME_COOKIE)
        tz_name = cookies.get(TZ_COOKIE)
        return cls(
            locale=negotiate(cookies.get(LANG_COOKIE), accept_language),
            theme=theme if theme in THEMES else None,
            tz_name=tz_name if zone(tz_name) is not None else None,
        )


class Formatter:
    """Dates, times and numbers in the person's language and time zone."""

    def __init__(self, prefs: Preferences) -> None:
        self.prefs = prefs
        self.babel_locale = Locale.parse(prefs.locale)

    def _local(self, value: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(self.prefs.tz)

    def datetime_text(self, value: datetime) -> str:
        local = self._local(value)
        date = format_date(local, "medium", locale=self.babel_locale)
        time = format_time(local, "short", locale=self.babel_locale)
        text = f"{date}, {time}"
        if self.prefs.tz_name is None:
            text += " UTC"
        return text

    def date_text(self, value: datetime) -> str:
        return format_date(self._local(value), "medium", locale=self.babel_locale)

    def time_tag(self, value: datetime | None, kind: str = "datetime") -> Markup:
        """A <time> element; the page's script re-renders it in the browser's time zone
        when the server did not know it yet."""
        if value is None:
            return Markup("")
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        text = self.date_text(value) if kind == "date" else self.datetime_text(value)
        full = format_datetime(self._local(value), "full", locale=self.babel_locale)
        return Markup('<time datetime="{}" data-format="{}" title="{}">{}</time>').format(
            value.astimezone(UTC).isoformat(), kind, full, text
        )

    def number(self, value: int | float) -> str:
        return format_decimal(value, locale=self.babel_locale)


# ---------------------------------------------------------------- catalog maintenance

TEMPLATE_METHOD_MAP = [("**.html", "jinja2")]
TEMPLATE_OPTIONS = {"**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}}
PYTHON_KEYWORDS = {"N_": None, "gettext": None, "ngettext": (1, 2), "_": None}


def collect_messages() -> dict[str, tuple[str | None, list[str]]]:
    """Every message of the interface: msgid -> (plural msgid or None, where it is used)."""
    from ..auth.errors import GENERIC, REASONS  # the reason catalogue is shown on pages

    found: dict[str, tuple[str | None, list[str]]] = {}

    def add(message: str | tuple[str, ...], where: str) -> None:
        singular, plural = (message, None) if isinstance(message, str) else message[:2]
        if not singular:
            return
        _, places = found.setdefault(singular, (plural, []))
        places.append(where)

    for filename, lineno, message, _comments, _context in extract_from_dir(
        HERE / "templates", TEMPLATE_METHOD_MAP, TEMPLATE_OPTIONS
    ):
        add(message, f"web/templates/{filename}:{lineno}")
    package = HERE.parent
    for folder in ("web", "auth", "upwork", "security"):
        for filename, lineno, message, _comments, _context in extract_from_dir(
            package / folder,
            [("**.py", "python")],
            keywords=PYTHON_KEYWORDS,
        ):
            add(message, f"{folder}/{filename}:{lineno}")
    for code, item in [*REASONS.items(), ("generic", GENERIC)]:
        add(item.message, f"auth/errors.py:{code}")
    return found


def catalog_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def update_catalogs(locales: Iterable[str] = LOCALES[1:]) -> list[str]:
    """Brings each catalog up to date with the messages; returns what is untranslated."""
    template = Catalog(project=PROJECT, domain=DOMAIN, fuzzy=False)
    for msgid, (plural, places) in sorted(collect_messages().items()):
        template.add(
            (msgid, plural) if plural else msgid,
            locations=[(p.rsplit(":", 1)[0], 0) for p in places],
        )
    missing: list[str] = []
    for locale in locales:
        path = catalog_path(locale)
        if path.exists():
            with path.open("rb") as po:
                catalog = read_po(po, locale=locale, domain=DOMAIN)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=locale, domain=DOMAIN, project=PROJECT)
        created = catalog.creation_date
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        # A stable header: the file changes only when its messages do.
        catalog.creation_date = created
        catalog.fuzzy = False
        catalog.version = "1"
        catalog.project = PROJECT
        catalog.last_translator = f"{PROJECT} translators"
        catalog.language_team = "Ukrainian"
        with path.open("wb") as po:
            write_po(po, catalog, width=100, omit_header=False, sort_output=True)
        missing += [f"{locale}: {m.id!r}" for m in catalog if m.id and not _translated(m)]
    translations.cache_clear()
    return missing


def _translated(message: object) -> bool:
    string = getattr(message, "string", None)
    if getattr(message, "fuzzy", False):
        return False
    if isinstance(string, tuple | list):
        return all(string)
    return bool(string)


if __name__ == "__main__":
    untranslated = update_catalogs()
    for line in untranslated:
        print("untranslated:", line)
    print(f"{len(collect_messages())} messages; {len(untranslated)} untranslated")
    sys.exit(1 if untranslated else 0)
