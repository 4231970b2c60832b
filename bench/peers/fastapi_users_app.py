"""The peer: the usual FastAPI account system, FastAPI-Users (JWT strategy in a cookie,
SQLAlchemy on the same database engine as ours), with httpx-oauth doing the same Upwork
flow against the same sandbox: authorize, consent, callback, code exchange, the same
GraphQL profile query, user upsert (an OAuth account row), session cookie.

Configured by the environment: PEER_DATABASE_URL (an async SQLAlchemy URL),
PEER_BASE_URL, UPWORK_CLIENT_ID, UPWORK_CLIENT_SECRET, UPWORK_AUTHORIZE_URL,
UPWORK_TOKEN_URL, UPWORK_GRAPHQL_URL. Served by uvicorn like ours:
``uvicorn bench.peers.fastapi_users_app:app``. Only for the benchmarks; never shipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, CookieTransport, JWTStrategy
from fastapi_users.db import (
    SQLAlchemyBaseOAuthAccountTableUUID,
    SQLAlchemyBaseUserTableUUID,
    SQLAlchemyUserDatabase,
)
from httpx_oauth.oauth2 import BaseOAuth2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, relationship

SECRET = os.environ.get("PEER_SECRET", "peer-benchmark-secret-not-for-production-use-0123")
PROFILE_QUERY = "query profile { user { id nid rid name email } organization { id } }"


class Base(DeclarativeBase):
    pass


class OAuthAccount(SQLAlchemyBaseOAuthAccountTableUUID, Base):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    oauth_accounts: Mapped[list[OAuthAccount]] = relationship("OAuthAccount", lazy="joined")


engine = create_async_engine(os.environ["PEER_DATABASE_URL"], pool_size=10, max_overflow=10)
sessions = async_sessionmaker(engine, expire_on_commit=False)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


async def get_user_db(session: AsyncSession = Depends(get_session)) -> AsyncIterator[Any]:
    yield SQLAlchemyUserDatabase(session, User, OAuthAccount)


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET


async def get_user_manager(user_db: Any = Depends(get_user_db)) -> AsyncIterator[UserManager]:
    yield UserManager(user_db)


def get_jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
    return JWTStrategy(secret=SECRET, lifetime_seconds=900)


backend = AuthenticationBackend(
    name="jwt",
    transport=CookieTransport(cookie_max_age=900, cookie_secure=False),
    get_strategy=get_jwt_strategy,
)
fastapi_users = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])


class UpworkOAuth2(BaseOAuth2[dict[str, Any]]):
    """httpx-oauth's generic OAuth 2.0 client with Upwork's endpoints and profile query."""

    def __init__(self) -> None:
        super().__init__(
            os.environ["UPWORK_CLIENT_ID"],
            os.environ["UPWORK_CLIENT_SECRET"],
            os.environ["UPWORK_AUTHORIZE_URL"],
            os.environ["UPWORK_TOKEN_URL"],
            name="upwork",
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 - not a secret
        )
        self.graphql_url = os.environ["UPWORK_GRAPHQL_URL"]

    async def get_id_email(self, token: str) -> tuple[str, str | None]:
        async with self.get_httpx_client() as client:
            r = await client.post(
                self.graphql_url,
                json={"query": PROFILE_QUERY},
                headers={"Authorization": f"Bearer {token}"},
            )
            r.raise_for_status()
            user = r.json()["data"]["user"]
            return str(user["id"]), user.get("email")


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserUpdate(schemas.BaseUserUpdate):
    pass


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
app.include_router(
    fastapi_users.get_oauth_router(
        UpworkOAuth2(),
        backend,
        SECRET,
        redirect_url=f"{os.environ['PEER_BASE_URL']}/auth/upwork/callback",
        associate_by_email=True,
        is_verified_by_default=True,
        csrf_token_cookie_secure=False,
    ),
    prefix="/auth/upwork",
)
app.include_router(fastapi_users.get_users_router(UserRead, UserUpdate), prefix="/users")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
