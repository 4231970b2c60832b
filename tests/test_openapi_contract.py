"""The OpenAPI document is the API's contract: every /api/ operation documents what it
answers (a typed body, or an explicit 204/redirect without one), its errors (the one
``{"error", "message"}`` body), how it is authenticated, and the body it takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from upwork_assistant.app import create_app
from upwork_assistant.config import Settings

#: /api/ operations anyone may call (sign-in, the MFA step, refresh by refresh cookie).
PUBLIC = {
    ("GET", "/api/auth/upwork/authorize"),
    ("GET", "/api/auth/upwork/callback"),
    ("POST", "/api/auth/refresh"),
    ("POST", "/api/auth/mfa"),
    # The MFA step with a passkey: before any session, by the MFA challenge cookie.
    ("POST", "/api/security/mfa/webauthn/authenticate/options"),
    ("POST", "/api/security/mfa/webauthn/authenticate/verify"),
}
SCHEMES = {"cookieAuth", "bearerAuth"}
ERROR_REF = "#/components/schemas/ErrorBody"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data: Path = tmp_path_factory.mktemp("openapi")
    settings = Settings(
        app_base_url="http://127.0.0.1:8000",
        data_dir=data,
        database_url=f"sqlite:///{data / 'app.db'}",
        worker_in_serve=False,
    )
    return create_app(settings).openapi()


def operations(spec: dict[str, Any], prefix: str = "/api/") -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        if path.startswith(prefix)
        for method, op in ops.items()
        if method in METHODS
    ]


def schema_of(media: dict[str, Any]) -> dict[str, Any]:
    schema = media.get("schema")
    assert isinstance(schema, dict) and schema, media
    return schema


def typed(schema: dict[str, Any]) -> bool:
    """A schema that says what is there: a model (a reference, or an object with its
    properties), a list of such, a scalar, or a union of such. Not ``{}`` (a raw
    Response) nor a free-form object (``dict[str, Any]``)."""
    if "$ref" in schema:
        return True
    union = [s for key in ("anyOf", "oneOf", "allOf") for s in schema.get(key, [])]
    if union:
        return all(typed(s) for s in union)
    kind = schema.get("type")
    if kind == "object":
        return bool(schema.get("properties"))
    if kind == "array":
        return typed(schema.get("items") or {})
    return kind is not None


def success_problems(op: dict[str, Any]) -> list[str]:
    responses = op.get("responses", {})
    typed_2xx = [
        code
        for code, r in responses.items()
        if code.startswith("2")
        and code != "204"
        and any(typed(schema_of(m)) for m in r.get("content", {}).values())
    ]
    bodiless = [code for code in ("204", "303") if code in responses]
    problems = []
    if not typed_2xx and not bodiless:
        problems.append("no typed 2xx response (nor an explicit 204/303)")
    for code in bodiless:
        if responses[code].get("content"):
            problems.append(f"{code} documents a body")
    for code, r in responses.items():
        # An untyped 200 (FastAPI's default for a raw Response) must not be left over.
        if code.startswith("2") and code != "204":
            for media in r.get("content", {}).values():
                if not typed(media.get("schema") or {}):
                    problems.append(f"{code} has an untyped schema")
    return problems


def error_problems(op: dict[str, Any]) -> list[str]:
    responses = op.get("responses", {})
    failures = {c: r for c, r in responses.items() if c[0] in "45"}
    problems = []
    if not any(c.startswith("4") for c in failures):
        problems.append("no documented 4xx response")
    for code, r in failures.items():
        schema = r.get("content", {}).get("application/json", {}).get("schema", {})
        if schema.get("$ref") != ERROR_REF:
            problems.append(f"{code} does not use ErrorBody")
    return problems


def test_security_schemes(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert set(schemes) >= SCHEMES
    cookie, bearer = schemes["cookieAuth"], schemes["bearerAuth"]
    assert cookie["type"] == "apiKey" and cookie["in"] == "cookie"
    assert cookie["name"] == "access_token"
    assert "__Host-access_token" in cookie["description"]  # the name over https
    assert bearer["type"] == "http" and bearer["scheme"] == "bearer"
    assert bearer["bearerFormat"] == "JWT"


def test_error_body(spec: dict[str, Any]) -> None:
    body = spec["components"]["schemas"]["ErrorBody"]
    assert set(body["required"]) == {"error", "message"}
    assert {k: v["type"] for k, v in body["properties"].items()} == {
        "error": "string",
        "message": "string",
    }


def test_every_api_operation_documents_its_answers(spec: dict[str, Any]) -> None:
    ops = operations(spec)
    assert len(ops) >= 24, len(ops)
    problems = {
        f"{method} {path}": found
        for method, path, op in ops
        if (found := success_problems(op) + error_problems(op))
    }
    assert not problems, problems


def test_signed_in_operations_declare_security(spec: dict[str, Any]) -> None:
    missing = {}
    for method, path, op in operations(spec):
        named = {name for requirement in op.get("security", []) for name in requirement}
        if (method, path) in PUBLIC:
            continue
        if not named >= SCHEMES:
            missing[f"{method} {path}"] = sorted(named)
    assert not missing, missing
    # Every public route of the list still exists (the list is not stale).
    present = {(m, p) for m, p, _ in operations(spec)}
    assert present >= PUBLIC


def test_every_request_body_has_a_schema(spec: dict[str, Any]) -> None:
    bodies = 0
    for method, path, op in operations(spec, prefix="/"):
        body = op.get("requestBody")
        if body is None:
            continue
        bodies += 1
        assert body.get("content"), (method, path)
        for media_type, media in body["content"].items():
            assert typed(schema_of(media)), (method, path, media_type)
    assert bodies >= 6
    # The MFA step takes the same field as JSON or as a browser's form.
    mfa = spec["paths"]["/api/auth/mfa"]["post"]["requestBody"]["content"]
    assert set(mfa) == {"application/json", "application/x-www-form-urlencoded"}
    for media in mfa.values():
        assert "code" in media["schema"]["required"]


def test_jwks_is_typed(spec: dict[str, Any]) -> None:
    assert not success_problems(spec["paths"]["/.well-known/jwks.json"]["get"])
