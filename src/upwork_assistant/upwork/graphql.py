"""Upwork's GraphQL API over a shared httpx connection pool.

Idempotent requests (GraphQL queries, not mutations) are retried on 5xx and network errors
with exponential backoff and full jitter. A 429 is never retried here: the gate (gate.py)
under the connection pool blocks every call for as long as Upwork's block lasts.

Upwork answers HTTP 200 for most failures (support article "API error handling"); the
``errors`` list says what went wrong, and :func:`classify` turns it into a typed error:
refused scopes (:class:`UpworkScopeError`, with the ``Type.field`` names), an
authentication failure (:class:`UpworkUnauthorized`, handled like a 401), or anything else.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse

from . import metrics
from .errors import (
    UpworkAPIError,
    UpworkError,
    UpworkNullFields,
    UpworkScopeError,
    UpworkUnauthorized,
    UpworkUnavailable,
    upwork_text,
)

MAX_BACKOFF = 8.0

#: "... doesn't have enough oauth2 permissions/scopes to access: [Money.currency, ...]"
SCOPE_RE = re.compile(r"permissions?/scopes?[^\[]*\[([^\]]*)\]", re.IGNORECASE)
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
#: A non-null field that came back null. graphql-java (what Upwork runs: its errors carry
#: graphql-java's ``classification``) says "The field at path '/user/x/fullName' was
#: declared as a non null type, ... within parent type 'FreelancerProfile'" with the
#: classification ``NullValueInNonNullableField``; graphql-core says "Cannot return null
#: for non-nullable field FreelancerProfile.fullName.".
NULL_JAVA_RE = re.compile(
    r"field at path '[^']*/([A-Za-z_][A-Za-z0-9_]*)' was declared as a non null type.*"
    r"within parent type '([A-Za-z_][A-Za-z0-9_]*)'",
    re.DOTALL,
)
NULL_CORE_RE = re.compile(r"non-nullable field ([A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*)")
#: How an authentication failure inside a 200 may be marked. Upwork does not document it
#: (``upwork check`` reports what a real key shows), so the usual GraphQL markers and
#: wordings all count; a scope error is recognised first, though it says "token" too.
AUTH_MARKERS = frozenset(
    {"UNAUTHENTICATED", "UNAUTHORIZED", "AUTHENTICATIONERROR", "AUTHENTICATION_ERROR", "401"}
)
AUTH_RE = re.compile(
    r"\b(unauthori[sz]ed|unauthenticated|authentication (failed|required|error)|"
    r"(access )?token (is |was |has )?(invalid|expired|revoked|been revoked)|"
    r"invalid (access |bearer )?token|expired (access |bearer )?token)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff: float = 0.25  # base delay; attempt n waits uniform(0, backoff * 2**(n-1))

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1)))  # noqa: S311


@lru_cache(maxsize=256)
def _operations(query: str) -> tuple[bool, str]:
    """(every operation is a query, the first operation's name) of a GraphQL document."""
    try:
        document = parse(query)
    except GraphQLError:
        return False, "invalid"
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    name = next((op.name.value for op in ops if op.name is not None), "anonymous")
    return all(op.operation is OperationType.QUERY for op in ops), name


def is_idempotent(query: str) -> bool:
    """True when every operation in the document is a query (safe to send twice)."""
    return _operations(query)[0]


def operation_name(query: str) -> str:
    return _operations(query)[1]


def _marker(error: dict[str, Any]) -> str:
    ext = error.get("extensions")
    if not isinstance(ext, dict):
        return ""
    return " ".join(str(ext.get(k, "")) for k in ("code", "classification")).upper()


def refused_fields(message: str) -> list[str] | None:
    """The ``Type.field`` names of a scope error's message; None when it is not one."""
    found = SCOPE_RE.search(message)
    if found is None:
        return None
    names = [n.strip() for n in found.group(1).split(",")]
    return [n for n in dict.fromkeys(names) if FIELD_RE.fullmatch(n)]


def null_field(message: str) -> str | None:
    """The ``Type.field`` a non-null error names, or None when it is not one."""
    java = NULL_JAVA_RE.search(message)
    if java is not None:
        return f"{java.group(2)}.{java.group(1)}"
    core = NULL_CORE_RE.search(message)
    return core.group(1) if core is not None else None


def null_fields(errors: list[Any]) -> list[str] | None:
    """When every error is a non-null field that came back null: those fields."""
    found: list[str] = []
    for error in errors:
        message = str(error.get("message", "")) if isinstance(error, dict) else ""
        name = null_field(message)
        if name is None:
            return None
        found.append(name)
    return list(dict.fromkeys(found)) or None


def classify(errors: list[Any]) -> UpworkError:
    """The typed error for a GraphQL ``errors`` list."""
    dicts = [e for e in errors if isinstance(e, dict)]
    messages = [str(e.get("message", "")) for e in dicts]
    refused: list[str] = []
    scope_messages: list[str] = []
    for error, message in zip(dicts, messages, strict=True):
        fields = refused_fields(message)
        if fields is not None or (
            "EXECUTIONABORTED" in _marker(error) and "scope" in message.lower()
        ):
            refused += fields or []
            scope_messages.append(message)
    if scope_messages:
        said = upwork_text("; ".join(scope_messages))
        return UpworkScopeError(list(dict.fromkeys(refused)), said)
    for error, message in zip(dicts, messages, strict=True):
        if set(_marker(error).split()) & AUTH_MARKERS or AUTH_RE.search(message):
            return UpworkUnauthorized(upwork_text(message))
    said = upwork_text("; ".join(m for m in messages if m))
    return UpworkAPIError(
        "Upwork's API could not answer the query" + (f": {said}" if said else "."), said, 200
    )


class UpworkGraphQLClient:
    def __init__(self, url: str, http: httpx.AsyncClient, policy: RetryPolicy) -> None:
        self._url = url
        self._http = http
        self.policy = policy

    async def execute(
        self,
        access_token: str,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        tenant_id: str | None = None,
        allow_partial: bool = False,
    ) -> dict[str, Any]:
        """Run ``query``; return its ``data``. With ``allow_partial``, data that came with
        GraphQL errors (other than refused scopes) is returned too. Raises a typed
        UpworkError otherwise."""
        with metrics.observe(operation_name(query)):
            return await self._execute(access_token, query, variables, tenant_id, allow_partial)

    async def _execute(
        self,
        access_token: str,
        query: str,
        variables: dict[str, Any] | None,
        tenant_id: str | None,
        allow_partial: bool,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {access_token}"}
        if tenant_id:
            headers["X-Upwork-API-TenantId"] = tenant_id
        body = {"query": query, "variables": variables or {}}
        attempts = self.policy.attempts if is_idempotent(query) else 1
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= attempts
            try:
                resp = await self._http.post(self._url, json=body, headers=headers)
            except httpx.TransportError as exc:
                if last:
                    if isinstance(exc, httpx.TimeoutException):
                        raise UpworkUnavailable() from None
                    raise UpworkUnavailable("Upwork could not be reached.") from None
                await asyncio.sleep(self.policy.delay(attempt))
                continue
            if resp.status_code == 401:
                raise UpworkUnauthorized(upwork_text(_first_message(resp)))
            if resp.status_code >= 500:
                if last:
                    raise UpworkAPIError(
                        f"Upwork's API answered with an error (HTTP {resp.status_code}).",
                        upwork_text(_first_message(resp)),
                        resp.status_code,
                    )
                await asyncio.sleep(self.policy.delay(attempt))
                continue
            return _data(resp, allow_partial)


def _first_message(resp: httpx.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message", "")) or None
    return None


def _data(resp: httpx.Response, allow_partial: bool) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        raise UpworkAPIError(
            "Upwork's API answer was not JSON.", http_status=resp.status_code
        ) from None
    if not isinstance(body, dict):
        raise UpworkAPIError(
            "Upwork's API answer was not understood.", http_status=resp.status_code
        )
    data = body.get("data")
    errors = body.get("errors")
    if errors:
        error = classify(errors if isinstance(errors, list) else [errors])
        if isinstance(error, UpworkScopeError):
            error.data = data if isinstance(data, dict) else None
            raise error
        listed = errors if isinstance(errors, list) else [errors]
        nulled = null_fields(listed)
        if allow_partial and nulled and isinstance(data, dict) and resp.status_code < 400:
            said = upwork_text("; ".join(str(e.get("message", "")) for e in listed[:3]))
            null_error = UpworkNullFields(nulled, said)
            null_error.data = data
            raise null_error
        if resp.status_code >= 400 or not (
            allow_partial and isinstance(data, dict) and not isinstance(error, UpworkUnauthorized)
        ):
            if isinstance(error, UpworkAPIError):
                error.http_status = resp.status_code
            raise error
    if resp.status_code >= 400:
        raise UpworkAPIError(
            f"Upwork's API refused the request (HTTP {resp.status_code}).",
            http_status=resp.status_code,
        )
    if not isinstance(data, dict):
        raise UpworkAPIError("Upwork's API returned no data.", http_status=resp.status_code)
    return data
