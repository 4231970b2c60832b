"""Calling the Upwork API for a user: a valid token from the vault, the user's organization
context, and one refresh-and-retry when Upwork answers 401."""

from __future__ import annotations

from typing import Any

from .errors import UpworkUnauthorized
from .graphql import UpworkGraphQLClient
from .vault import TokenVault


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
        grant = await self._vault.access_token(user_id)
        try:
            return await self._graphql.execute(
                grant.token,
                query,
                variables,
                tenant_id=grant.tenant_id,
                allow_partial=allow_partial,
            )
        except UpworkUnauthorized:
            # The token died early (revoked, or long-lived without expires_in): refresh
            # once and try again; a second 401 is final.
            grant = await self._vault.access_token(user_id, rejected=grant.token)
            return await self._graphql.execute(
                grant.token,
                query,
                variables,
                tenant_id=grant.tenant_id,
                allow_partial=allow_partial,
            )
