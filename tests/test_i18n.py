"""The translation catalogs are complete: every message of the pages (templates, marked
strings, the API's reason catalogue) has a Ukrainian translation with the same
placeholders, and nothing in the catalog is left over. `make messages` updates them."""

from __future__ import annotations

import re

import pytest
from babel.messages.pofile import read_po

from upwork_assistant.web.i18n import (
    LOCALES,
    catalog_path,
    collect_messages,
    ngettext,
    translations,
    use_locale,
)

PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


@pytest.fixture(scope="module")
def messages() -> dict[str, tuple[str | None, list[str]]]:
    return collect_messages()


def test_messages_are_collected(messages: dict[str, tuple[str | None, list[str]]]) -> None:
    # The extraction itself works: strings from templates, Python and the reason catalogue.
    assert "Sign in with Upwork" in messages  # signin.html
    assert "Your profile is up to date with Upwork." in messages  # web/routes.py
    assert any(p.startswith("auth/errors.py") for _, places in messages.values() for p in places)
    assert messages["%(count)s backup code left."][0] == "%(count)s backup codes left."
    assert len(messages) > 150


@pytest.mark.parametrize("locale", LOCALES[1:])
def test_catalog_is_complete(
    locale: str, messages: dict[str, tuple[str | None, list[str]]]
) -> None:
    with catalog_path(locale).open("rb") as po:
        catalog = read_po(po, locale=locale)
    entries = {m.id if isinstance(m.id, str) else m.id[0]: m for m in catalog if m.id}
    missing = sorted(set(messages) - set(entries))
    assert not missing, f"not in the {locale} catalog (run `make messages`): {missing}"
    leftover = sorted(set(entries) - set(messages))
    assert not leftover, f"no longer used (run `make messages`): {leftover}"
    problems = []
    for msgid, (plural, _places) in messages.items():
        entry = entries[msgid]
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if entry.fuzzy or not all(s.strip() for s in strings):
            problems.append(f"untranslated: {msgid!r}")
            continue
        if plural and len(strings) != catalog.num_plurals:
            problems.append(f"plural forms missing: {msgid!r}")
        wanted = set(PLACEHOLDER.findall(msgid + (plural or "")))
        for s in strings:
            if set(PLACEHOLDER.findall(s)) != wanted:
                problems.append(f"placeholders differ: {msgid!r} -> {s!r}")
    assert not problems, "\n".join(problems)


def test_ukrainian_plurals() -> None:
    with use_locale("uk"):
        forms = {
            n: ngettext("%(count)s backup code left.", "%(count)s backup codes left.", n)
            for n in (1, 2, 5, 11, 21, 22, 25)
        }
    assert forms[1] == forms[21] != forms[2]
    assert forms[2] == forms[22] != forms[5]
    assert forms[5] == forms[11] == forms[25]
    assert translations("en").gettext("Sign in with Upwork") == "Sign in with Upwork"
