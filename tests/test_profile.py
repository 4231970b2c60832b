from __future__ import annotations

import pytest

from upwork_assistant.db.models import User
from upwork_assistant.upwork.errors import UpworkError
from upwork_assistant.upwork.profile import parse_profile


def profile(**user: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "123",
        "nid": "nick",
        "rid": "77",
        "name": "A B",
        "email": "a@Example.COM",
    }
    base.update(user)
    return {"user": base}


def test_normalises_text_and_email() -> None:
    p = parse_profile(profile(name="  Ann \u200b\t  Lee\x00 ", email=" ann@EXAMPLE.com "))
    assert p.name == "Ann Lee" and p.email == "ann@example.com"


def test_numeric_ids_accepted() -> None:
    assert parse_profile(profile(id=123456, rid=77)).id == "123456"


@pytest.mark.parametrize("email", [None, "", "not-an-email", "a@b", "x" * 250 + "@e.com", 5])
def test_missing_or_bad_email_becomes_none(email: object) -> None:
    assert parse_profile(profile(email=email)).email is None


def test_html_in_name_is_kept_as_text() -> None:
    assert parse_profile(profile(name="<b>x</b>")).name == "<b>x</b>"


def test_missing_name_falls_back_to_nickname() -> None:
    """Refused, withheld or purged (after 24 hours): the account still has a name to show."""
    assert parse_profile(profile(name=None)).name == ""
    assert User(upwork_id="123", name=None, upwork_nid="nick").display_name == "nick"
    assert User(upwork_id="123", name="", upwork_nid=None).display_name == "Upwork user 123"


def test_photo_and_profile_key_are_kept_only_when_well_formed() -> None:
    good = parse_profile(
        profile(photoUrl="https://a.example/p.png", ciphertext="~01abcdef0123456789")
    )
    assert good.photo_url == "https://a.example/p.png"
    assert good.profile_key == "~01abcdef0123456789"
    bad = parse_profile(profile(photoUrl="javascript:alert(1)", ciphertext="<x>"))
    assert bad.photo_url is None and bad.profile_key is None


@pytest.mark.parametrize(
    "bad",
    [
        {"id": None},
        {"id": ""},
        {"id": "a b"},
        {"id": "<script>"},
        {"id": "x" * 65},
        {"id": True},
        {"name": "n" * 513},
        {"name": "n" * 10240},
        {"name": 5},
        {"nid": "bad nid!"},
        {"rid": "r r"},
    ],
)
def test_invalid_profiles_refused(bad: dict[str, object]) -> None:
    with pytest.raises(UpworkError) as info:
        parse_profile(profile(**bad))
    assert info.value.code == "invalid_profile"


@pytest.mark.parametrize("data", [None, {}, {"user": None}, {"user": "x"}, []])
def test_no_user_object(data: object) -> None:
    with pytest.raises(UpworkError):
        parse_profile(data)
