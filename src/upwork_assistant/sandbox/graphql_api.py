"""Upwork's GraphQL endpoint: ``POST /graphql`` with ``Authorization: Bearer``."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    execute,
    parse,
    validate,
)

from . import profiles
from .common import rate_limited, served_at
from .scopes import scope_error
from .state import Faults, Grant, SandboxState, SandboxUser


def graphql_router(state: SandboxState, gql_schema: GraphQLSchema) -> APIRouter:
    """``POST /graphql`` answering from ``state`` with ``gql_schema``."""
    router = APIRouter()

    @router.post("/graphql")
    async def graphql_endpoint(request: Request) -> Response:
        return await graphql(state, gql_schema, request)

    return router


def graphql_errors(*errors: Mapping[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({"data": None, "errors": list(errors)}, status_code=status)


def bearer_grant(state: SandboxState, request: Request) -> Grant | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    grant = state.access_tokens.get(header[7:].strip())
    return grant if grant is not None and grant.valid(time.time()) else None


def unauthorized(faults: Faults, message: str) -> JSONResponse:
    if faults.auth_error_status == 200:
        # Upwork's GraphQL answers most failures with 200 ("API error handling"); whether
        # authentication failures are among them is not documented, hence the switch.
        return graphql_errors(
            {
                "message": "Authentication failed: the access token is invalid, expired or revoked",
                "extensions": {
                    "code": "UNAUTHENTICATED",
                    "classification": "AuthenticationError",
                },
            }
        )
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def fault_answer(faults: Faults) -> Response | None:
    """What the graphql_status fault says instead of running the query, or None."""
    if faults.graphql_status == 401:
        return unauthorized(faults, "Authentication failed: token rejected")
    if faults.graphql_status == 429:
        return JSONResponse(
            {"errors": [{"message": "Too many requests"}]},
            status_code=429,
            headers={"Retry-After": str(faults.retry_after)},
        )
    if faults.graphql_status:
        return JSONResponse(
            {"errors": [{"message": "Internal server error"}]},
            status_code=faults.graphql_status,
        )
    return None


def root_value(state: SandboxState, user: SandboxUser, request: Request) -> dict[str, Any]:
    base_url, now = served_at(request), datetime.now(UTC)  # one "now" per query
    return {
        "user": profiles.with_nulls(user.graphql_user(base_url, now), state.faults.profile_nulls),
        "freelancerProfileByProfileKey": profiles.by_profile_key(
            state.users.values(), base_url, now
        ),
        "organization": user.graphql_organization(),
        "companySelector": {
            "items": [
                {
                    "title": user.organization_name,
                    "organizationId": user.organization_id,
                    "organizationRid": user.organization_id[-7:],
                    "photoUrl": None,
                }
            ]
        },
    }


async def run_query(
    state: SandboxState,
    gql_schema: GraphQLSchema,
    payload: dict[str, Any],
    grant: Grant,
    request: Request,
) -> JSONResponse:
    """Parse, validate, check the key's scopes, then execute."""
    try:
        document: DocumentNode = parse(payload["query"])
    except GraphQLError as exc:
        return graphql_errors(exc.formatted)
    errors = validate(gql_schema, document)
    if errors:
        return graphql_errors(*(e.formatted for e in errors))
    operation_name = payload.get("operationName")
    operation_name = operation_name if isinstance(operation_name, str) else None
    refused = scope_error(
        gql_schema, document, operation_name, state.client_scopes(grant.client_id)
    )
    if refused is not None:
        state.stats["scope_errors"] += 1
        return graphql_errors(refused)
    variables = payload.get("variables")
    result = execute(
        gql_schema,
        document,
        root_value=root_value(state, state.users[grant.user_id], request),
        variable_values=variables if isinstance(variables, dict) else None,
        operation_name=operation_name,
    )
    if inspect.isawaitable(result):
        result = await result
    return JSONResponse(answer(state.faults, result))


def answer(faults: Faults, result: ExecutionResult) -> dict[str, Any]:
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [profiles.as_graphql_java(e) for e in result.errors]
    patch = faults.user_patch
    if patch and isinstance(result.data, dict) and result.data.get("user"):
        # Upwork sending malformed data: bypasses the schema on purpose.
        body["data"]["user"] = {**result.data["user"], **patch}
    return body


async def read_payload(request: Request) -> dict[str, Any] | Response:
    """The request's JSON body with its ``query`` string, or the 400 answer."""
    try:
        payload = json.loads(await request.body())
    except ValueError:
        return JSONResponse({"errors": [{"message": "Body is not valid JSON"}]}, 400)
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return JSONResponse({"errors": [{"message": "Body needs a 'query' string"}]}, 400)
    return payload


def tenant_refused(user: SandboxUser, request: Request) -> Response | None:
    """403 when ``X-Upwork-API-TenantId`` names another organization than the user's."""
    tenant = request.headers.get("x-upwork-api-tenantid")
    if tenant is not None and tenant != user.organization_id:
        return graphql_errors(
            {
                "message": "Access denied to the requested organization",
                "extensions": {"code": "FORBIDDEN"},
            },
            status=403,
        )
    return None


async def graphql(state: SandboxState, gql_schema: GraphQLSchema, request: Request) -> Response:
    faults = state.faults
    state.stats["graphql_requests"] += 1
    if (limited := rate_limited(state, request)) is not None:
        return limited
    if faults.graphql_delay:
        await asyncio.sleep(faults.graphql_delay)
    grant = bearer_grant(state, request)
    if grant is None:
        return unauthorized(
            state.faults, "Authentication failed: missing, invalid or expired token"
        )
    if (faulty := fault_answer(state.faults)) is not None:
        return faulty
    payload = await read_payload(request)
    if isinstance(payload, Response):
        return payload
    if faults.graphql_errors:
        return graphql_errors(
            {
                "message": "Internal error while resolving the query",
                "extensions": {"code": "INTERNAL_SERVER_ERROR"},
            }
        )
    if (refused := tenant_refused(state.users[grant.user_id], request)) is not None:
        return refused
    return await run_query(state, gql_schema, payload, grant, request)
