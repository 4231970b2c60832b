"""The ``upwork-assistant`` command."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated

import typer
import uvicorn
from sqlalchemy import select

from .config import (
    CALLBACK_PATH,
    ConfigError,
    Settings,
    add_development_key,
    get_settings,
    new_encryption_key_spec,
)
from .db.models import Role, User
from .logs import configure_logging, configure_logging_for
from .security import audit, rotation
from .services import Services


def _commands(help_text: str) -> typer.Typer:
    """A command group. A crash prints its traceback without local variables: typer's
    default (rich's, every frame's locals) would print the client secret and tokens that
    the commands hold in locals to the terminal."""
    return typer.Typer(help=help_text, no_args_is_help=True, pretty_exceptions_show_locals=False)


app = _commands("Upwork Assistant: Sign in with Upwork.")
db_app = _commands("Database commands.")
app.add_typer(db_app, name="db")

SANDBOX_CLIENT_ID = "sandbox-client-id"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - the documented sandbox default
SANDBOX_REDIRECT_URI = f"http://127.0.0.1:8000{CALLBACK_PATH}"


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


async def _unreadable_ciphertexts(settings: Settings) -> dict[str, int]:
    from .db.engine import Database
    from .security.keys import KeyRing

    database = Database(settings.resolved_database_url)
    try:
        async with database.session() as db:
            return await rotation.unknown_keys(db, KeyRing(settings.secrets.token_encryption_keys))
    except Exception:  # no database or no tables yet: nothing stored to check
        return {}
    finally:
        await database.dispose()


def _refuse_missing_keys(settings: Settings | None = None) -> None:
    """Stop before serving or working when stored rows are encrypted with a key that is
    not in TOKEN_ENCRYPTION_KEYS: they could not be read, and would fail user by user."""
    try:
        settings = settings or get_settings()
        _ = settings.secrets
    except ConfigError as exc:
        _fail(exc)
    assert settings is not None
    missing = asyncio.run(_unreadable_ciphertexts(settings))
    if missing:
        _fail(
            ConfigError(
                "stored data is encrypted with keys missing from TOKEN_ENCRYPTION_KEYS: "
                + ", ".join(f"{kid} ({n})" for kid, n in missing.items())
                + ". Put those keys back (after the primary) and run `keys rotate` first."
            )
        )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve the web app and API.

    When APP_BASE_URL is unset it follows --host and --port, so the sandbox's callback
    matches wherever the app is served."""
    if "APP_BASE_URL" not in os.environ and host not in ("0.0.0.0", "::"):  # noqa: S104
        os.environ["APP_BASE_URL"] = f"http://{host}:{port}"
    try:
        settings = get_settings()
        _ = settings.secrets  # production: stop here, clearly, when a secret is missing
    except ConfigError as exc:
        _fail(exc)
    # Our logging before uvicorn's first line; uvicorn installs none (log_config=None)
    # and its loggers propagate to our root handler, in every worker process too.
    configure_logging_for(settings)
    _refuse_missing_keys(settings)
    if settings.sandbox_mode and workers > 1:
        _fail(
            ConfigError(
                "the built-in Upwork sandbox keeps its state in one process, so sandbox mode "
                "serves with one worker. For several workers run `upwork-assistant sandbox` on "
                "its own and point UPWORK_CLIENT_ID, UPWORK_CLIENT_SECRET and UPWORK_*_URL at it."
            )
        )
    if workers > 1:
        # Several processes: the upkeep belongs in one `worker` process beside them, and
        # the metrics of every process are added up from files in one folder.
        os.environ.setdefault("WORKER_IN_SERVE", "false")
        _prometheus_multiprocess(settings)
    uvicorn.run(
        "upwork_assistant.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=False,
        server_header=False,
        log_config=None,
    )


def _prometheus_multiprocess(settings: Settings) -> None:
    """Point prometheus_client's multiprocess mode at a fresh folder (unless the operator
    chose one), before the worker processes start and import it."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = settings.data_dir.resolve() / "prometheus"
    if folder.exists():
        for stale in folder.glob("*.db"):  # values of processes that are gone
            stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit.")] = False,
) -> None:
    """Keep Upwork connections alive, purge Upwork content past 24 hours, look after the
    security log. A single-process `serve` runs this inside; run it beside `serve
    --workers N`."""
    _refuse_missing_keys()

    async def work(svc: Services) -> int:
        if once:
            result = await svc.worker.run_once()
            typer.echo(
                f"renewed {result.renewed} connections, purged {result.purged} stale "
                f"Upwork content groups, pruned {result.pruned} rows past their use"
            )
        else:
            await svc.worker.run_forever()
        return 0

    _run_with_services(work)


users_app = _commands("User administration.")
app.add_typer(users_app, name="users")
audit_app = _commands("The security log.")
app.add_typer(audit_app, name="audit")


def _run_with_services(work: Callable[[Services], Awaitable[int]]) -> None:
    """Build the app's services from the environment, run ``work``, exit with its code."""
    try:
        settings = get_settings()
        services = Services.build(settings)
    except ConfigError as exc:
        _fail(exc)
    configure_logging_for(settings)

    async def run() -> int:
        try:
            return await work(services)
        finally:
            await services.aclose()

    try:
        code = asyncio.run(run())
    except KeyboardInterrupt:  # stopping a long-running command (the worker)
        code = 0
    raise typer.Exit(code)


def _set_role(upwork_id: str, role: Role) -> None:
    async def work(svc: Services) -> int:
        async with svc.db.write() as db:
            user = (
                await db.execute(select(User).where(User.upwork_id == upwork_id))
            ).scalar_one_or_none()
            if user is None:
                typer.secho(
                    f"error: no user with Upwork id {upwork_id}", err=True, fg=typer.colors.RED
                )
                return 1
            before, user.role = user.role, role
            if before != role:
                await audit.record(
                    db, audit.USER_ROLE_CHANGED, None, user_id=user.id, role=role, by="command line"
                )
        label = "an admin" if role == Role.ADMIN else "a user"
        typer.echo(f"{user.display_name} ({upwork_id}) is now {label}")
        return 0

    _run_with_services(work)


@users_app.command("promote")
def promote(upwork_id: Annotated[str, typer.Argument(help="The user's Upwork id.")]) -> None:
    """Make a user an admin."""
    _set_role(upwork_id, Role.ADMIN)


@users_app.command("demote")
def demote(upwork_id: Annotated[str, typer.Argument(help="The user's Upwork id.")]) -> None:
    """Take admin rights away."""
    _set_role(upwork_id, Role.USER)


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the security log's hash chain and signed checkpoints; exit 1 on any problem."""

    async def work(svc: Services) -> int:
        async with svc.db.session() as db:
            report = await audit.verify(db, svc.keys.audit_chain, svc.keys.audit_signing_key)
        extra = f", {report.unchained} older unchained records" if report.unchained else ""
        if report.legacy:
            extra += f", {report.legacy} records of the first chain format (id and "
            extra += "anonymisation not yet chained)"
        typer.echo(f"{report.records} records, {report.checkpoints} checkpoints checked{extra}")
        for problem in report.problems:
            typer.secho(f"PROBLEM: {problem}", fg=typer.colors.RED)
        typer.echo(
            "OK: no record was edited, inserted or deleted"
            if report.ok
            else f"{len(report.problems)} problem(s) found"
        )
        return 0 if report.ok else 1

    _run_with_services(work)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign a checkpoint of the security log now (the worker does this every pass)."""

    async def work(svc: Services) -> int:
        async with svc.db.write() as db:
            cp = await audit.checkpoint(db, svc.keys.audit_signing_key)
        typer.echo(f"checkpoint at record {cp.event_id}" if cp else "nothing new to sign")
        return 0

    _run_with_services(work)


keys_app = _commands("Encryption and signing keys.")
app.add_typer(keys_app, name="keys")


@keys_app.command("status")
def keys_status() -> None:
    """How many stored ciphertexts use each encryption key."""

    async def work(svc: Services) -> int:
        async with svc.db.session() as db:
            usage = await rotation.key_usage(db)
        ring = svc.keyring
        for kid in dict.fromkeys([*ring.key_ids, *usage]):
            role = (
                "primary"
                if kid == ring.primary_id
                else "in ring"
                if kid in ring.key_ids
                else "MISSING FROM RING"
            )
            counts: dict[str, int] = usage.get(kid, {})
            detail = ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))
            typer.echo(
                f"{kid}  {role:18} {sum(counts.values()):6} ciphertexts"
                + (f"  ({detail})" if detail else "")
            )
        unused = [k for k in ring.key_ids if k != ring.primary_id and k not in usage]
        if unused:
            typer.echo(f"can be removed from TOKEN_ENCRYPTION_KEYS: {', '.join(unused)}")
        return 0

    _run_with_services(work)


@keys_app.command("rotate")
def keys_rotate(
    add_key: Annotated[
        bool,
        typer.Option(
            "--add-key",
            help="First put a new key in front of the ring (development secrets "
            "file only; in production set TOKEN_ENCRYPTION_KEYS yourself).",
        ),
    ] = False,
) -> None:
    """Re-encrypt every stored Upwork token, MFA secret and signing key under the primary
    key, in batches; safe to interrupt and run again."""
    try:
        settings = get_settings()
    except ConfigError as exc:
        _fail(exc)
    if add_key:
        if settings.token_encryption_keys:
            typer.echo(
                "TOKEN_ENCRYPTION_KEYS comes from the environment. Put this new key "
                "first on every instance, restart them, then run `keys rotate`:"
            )
            typer.echo(
                f"TOKEN_ENCRYPTION_KEYS={new_encryption_key_spec()},"
                f"{settings.token_encryption_keys}"
            )
            raise typer.Exit(1)
        kid = add_development_key(settings.data_dir)
        typer.echo(
            f"added key {kid} to {settings.data_dir / 'secrets.json'}; "
            "restart running servers after this"
        )

    async def work(svc: Services) -> int:
        done = await rotation.reencrypt(svc.db, svc.keyring)
        moved = done.moved
        async with svc.db.write() as db:
            await audit.record(
                db,
                audit.KEY_ROTATION,
                None,
                primary=svc.keyring.primary_id,
                moved=sum(moved.values()),
                unreadable=len(done.unreadable),
            )
        typer.echo(
            f"primary key {svc.keyring.primary_id}: moved {sum(moved.values())} "
            "ciphertexts" + "".join(f"\n  {n} {label}" for label, n in moved.items())
        )
        for label, row in done.unreadable:
            typer.secho(
                f"UNREADABLE, left as it is: {label} of {row} (a key missing from the ring, "
                "or a damaged row; the user reconnects Upwork or sets up MFA again)",
                fg=typer.colors.RED,
            )
        return 1 if done.unreadable else 0

    _run_with_services(work)


@keys_app.command("rotate-jwt")
def keys_rotate_jwt() -> None:
    """Start signing access tokens with a new key; older keys keep verifying until their
    tokens have expired, and all are published in /.well-known/jwks.json."""

    async def work(svc: Services) -> int:
        await svc.jwt_keys.load()
        keep = timedelta(seconds=svc.settings.access_token_ttl_seconds + 300)
        kid = await svc.jwt_keys.rotate(keep)
        async with svc.db.write() as db:
            await audit.record(db, audit.KEY_ROTATION, None, jwt_key=kid)
        typer.echo(f"new signing key {kid}; servers pick it up within a minute")
        return 0

    _run_with_services(work)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations."""
    from .db.migrate import upgrade

    try:
        settings = get_settings()
    except ConfigError as exc:
        _fail(exc)
    configure_logging_for(settings)  # Alembic's lines as the app's (env.py keeps them)
    upgrade(settings.resolved_database_url, revision)
    typer.echo(f"database at {revision}")


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
    client_id: Annotated[str, typer.Option(help="The registered client's id.")] = SANDBOX_CLIENT_ID,
    client_secret: Annotated[
        str, typer.Option(help="The registered client's secret.")
    ] = SANDBOX_CLIENT_SECRET,
    redirect_uri: Annotated[
        list[str] | None, typer.Option(help="A registered redirect URI (repeatable).")
    ] = None,
    scopes: Annotated[
        str,
        typer.Option(
            help="The API key's scopes: comma-separated scope ids, or 'all'. "
            "Default: common-entities, as Upwork grants every key."
        ),
    ] = "",
) -> None:
    """Serve the Upwork sandbox alone, on Upwork's paths with no prefix."""
    from .sandbox import SCOPES, SandboxClient, SandboxConfig, create_sandbox_app, parse_scopes

    try:
        granted = parse_scopes(scopes)
    except ValueError as exc:
        _fail(exc)
    uris = tuple(redirect_uri or [SANDBOX_REDIRECT_URI])
    config = SandboxConfig(clients=[SandboxClient(client_id, client_secret, uris, granted)])
    base = f"http://{host}:{port}"
    typer.echo("Upwork sandbox")
    typer.echo(f"  authorize:     {base}/ab/account-security/oauth2/authorize")
    typer.echo(f"  token:         {base}/api/v3/oauth2/token")
    typer.echo(f"  graphql:       {base}/graphql")
    typer.echo(f"  client id:     {client_id}")
    typer.echo(f"  client secret: {client_secret}")
    for uri in uris:
        typer.echo(f"  redirect uri:  {uri}")
    for scope_id in granted:
        typer.echo(f"  scope:         {scope_id} ({SCOPES[scope_id].label})")
    try:
        configure_logging_for(get_settings())
    except ConfigError:  # the sandbox alone needs no setting of the app's
        production = os.environ.get("APP_ENV", "").lower() == "production"
        configure_logging("INFO", "json" if production else "console")
    uvicorn.run(
        create_sandbox_app(config), host=host, port=port, server_header=False, log_config=None
    )


upwork_app = _commands("Upwork itself: check the API key.")
app.add_typer(upwork_app, name="upwork")


@upwork_app.command("check")
def upwork_check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the sign-in's callback.")
    ] = 300.0,
) -> None:
    """With the configured key: endpoints and TLS, the callback URL to register, an
    interactive sign-in, then what the key's scopes grant field by field, token lifetimes,
    PKCE, refresh rotation, the old refresh token, Basic on refresh and how a bad token is
    answered. Exit 1 when a problem was found. Nothing secret is printed."""
    import json

    from .upwork.check import human, run_check
    from .upwork.oauth import UpworkOAuthClient

    def say(line: str) -> None:
        typer.echo(line, err=True)

    try:
        if get_settings().sandbox_mode:
            raise ConfigError(
                "upwork check needs your Upwork key: set UPWORK_CLIENT_ID and "
                "UPWORK_CLIENT_SECRET (to rehearse, run `upwork-assistant sandbox` and point "
                "UPWORK_*_URL at it, see docs/sandbox.md)"
            )
    except ConfigError as exc:
        _fail(exc)

    async def work(svc: Services) -> int:
        def oauth_for(pkce: bool) -> UpworkOAuthClient:
            settings = svc.settings.model_copy(update={"upwork_use_pkce": pkce})
            return UpworkOAuthClient(settings, svc.oauth.transport)

        report = await run_check(svc.settings, svc.http, oauth_for, svc.graphql, say, timeout)
        data = report.as_dict()
        typer.echo(json.dumps(data, indent=2) if as_json else human(data))
        return 0 if data["ok"] else 1

    _run_with_services(work)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
