"""Validate and normalise the Upwork profile before it touches the database (AUTH-REG-005).

Names are stored as data, exactly as text (HTML in a name stays text: templates escape it).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import UpworkError

NAME_MAX = 512
EMAIL_MAX = 254
URL_MAX = 1024
ID_RE = re.compile(r"^[A-Za-z0-9~_.:\-]{1,64}$")
NID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: The profile key (``ciphertext``), e.g. ``~01abcdef0123456789``.
PROFILE_KEY_RE = re.compile(r"^~?[A-Za-z0-9_]{1,63}$")
URL_RE = re.compile(r"^https?://[^\s<>\"']+$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def _clean_text(value: str) -> str:
    value = unicodedata.normalize("NFC", value)
    value = _CONTROL.sub("", value)
    return " ".join(value.split())


def _id_text(value: Any) -> str | None:
    """An Upwork id as text (ids may come as numbers), or None when malformed."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not ID_RE.fullmatch(value.strip()):
        return None
    return value.strip()


class UpworkProfile(BaseModel):
    model_config = ConfigDict(frozen=True, str_strip_whitespace=True, populate_by_name=True)

    id: str
    nid: str | None = None
    rid: str | None = None
    name: str
    email: str | None = None
    photo_url: str | None = Field(default=None, alias="photoUrl")
    profile_key: str | None = Field(default=None, alias="ciphertext")

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> str:
        cleaned = _id_text(value)
        if cleaned is None:
            raise ValueError("Upwork user id is missing or malformed")
        return cleaned

    @field_validator("rid", mode="before")
    @classmethod
    def _rid(cls, value: Any) -> str | None:
        if value is None or value == "":
            return None
        cleaned = _id_text(value)
        if cleaned is None:
            raise ValueError("Upwork rid is malformed")
        return cleaned

    @field_validator("nid", mode="before")
    @classmethod
    def _nid(cls, value: Any) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not NID_RE.fullmatch(value.strip()):
            raise ValueError("Upwork nickname (nid) is malformed")
        return value.strip()

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ValueError("Upwork name is not text")
        if len(value) > NAME_MAX * 4:
            raise ValueError(f"Upwork name is longer than {NAME_MAX} characters")
        cleaned = _clean_text(value)
        if len(cleaned) > NAME_MAX:
            raise ValueError(f"Upwork name is longer than {NAME_MAX} characters")
        return cleaned

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: Any) -> str | None:
        # Upwork may withhold the email; a missing or malformed one is stored as "none".
        if not isinstance(value, str):
            return None
        value = value.strip()
        if len(value) > EMAIL_MAX or not EMAIL_RE.fullmatch(value):
            return None
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"

    @field_validator("photo_url", mode="before")
    @classmethod
    def _photo(cls, value: Any) -> str | None:
        # A photo we cannot safely link to is left out, not a reason to refuse sign-in.
        if not isinstance(value, str):
            return None
        value = value.strip()
        return value if len(value) <= URL_MAX and URL_RE.fullmatch(value) else None

    @field_validator("profile_key", mode="before")
    @classmethod
    def _profile_key(cls, value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        value = value.strip()
        return value if PROFILE_KEY_RE.fullmatch(value) else None


def parse_profile(data: Any) -> UpworkProfile:
    """``data`` is the GraphQL ``data`` object; raises :class:`UpworkError` when unusable."""
    user = data.get("user") if isinstance(data, dict) else None
    if not isinstance(user, dict):
        raise UpworkError("invalid_profile", "Upwork did not send a user profile.")
    try:
        return UpworkProfile.model_validate(user)
    except ValidationError as exc:
        reasons = "; ".join(str(e.get("ctx", {}).get("error", e["msg"])) for e in exc.errors())
        raise UpworkError(
            "invalid_profile",
            f"Upwork sent a profile we cannot use ({reasons}).",
        ) from None
