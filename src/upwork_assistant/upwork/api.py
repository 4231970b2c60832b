"""Calling the Upwork API for a user: a valid token from the vault, the user's organization
context, and one refresh-and-retry when Upwork refuses the token (a 401, or an
authentication error inside a 200). Refused again right after a refresh, the connection
is marked ``needs_reauth``: the user must reconnect, and nothing retries in a loop."""

from __future__ import annotations

from typing import Any

from .errors import UpworkUnauthorized
from .graphql import UpworkGraphQLClient
from .vault import AccessGrant, TokenVault


class UpworkAPI:
    def __init__(self, vault: TokenVault, graphql: UpworkGraphQLClient) -> None:
        self._vault = vault
        self._graphql = graphql

    async def query(
        self,
        user_id: str,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        allow_partial: bool = False,
    ) -> dict[str, Any]:
        async def run(grant: AccessGrant) -> dict[str, Any]:
            return await self._graphql.execute(
                grant.token,
                query,
                variables,
                tenant_id=grant.tenant_id,
                allow_partial=allow_partial,
            )

        grant = await self._vault.access_token(user_id)
        try:
            return await run(grant)
        except UpworkUnauthorized:
            # The token died early (revoked, or long-lived without expires_in): refresh
            # once and try again.
            grant = await self._vault.access_token(user_id, rejected=grant.token)
        try:
            return await run(grant)
        except UpworkUnauthorized as exc:
            raise await self._vault.needs_reauth(
                user_id, "token_rejected", exc.upwork_message
            ) from None
