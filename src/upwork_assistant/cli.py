"""The ``upwork-assistant`` command."""

from __future__ import annotations

import contextlib
import os
from typing import Annotated

import typer
import uvicorn

from .config import ConfigError, get_settings

app = typer.Typer(help="Upwork Assistant: Sign in with Upwork.", no_args_is_help=True)
db_app = typer.Typer(help="Database commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")

SANDBOX_CLIENT_ID = "sandbox-client-id"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - the documented sandbox default
SANDBOX_REDIRECT_URI = "http://127.0.0.1:8000/api/auth/upwork/callback"


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


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
    if settings.sandbox_mode and workers > 1:
        _fail(
            ConfigError(
                "the built-in Upwork sandbox keeps its state in one process, so sandbox mode "
                "serves with one worker. For several workers run `upwork-assistant sandbox` on "
                "its own and point UPWORK_CLIENT_ID, UPWORK_CLIENT_SECRET and UPWORK_*_URL at it."
            )
        )
    uvicorn.run(
        "upwork_assistant.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=False,
        server_header=False,
    )


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit.")] = False,
) -> None:
    """Keep Upwork connections alive and run the daily profile sync."""
    import asyncio

    from .app import configure_logging
    from .services import Services

    try:
        settings = get_settings()
        services = Services.build(settings)
    except ConfigError as exc:
        _fail(exc)
    configure_logging(settings.log_level)

    async def run() -> None:
        try:
            if once:
                result = await services.worker.run_once()
                typer.echo(f"renewed {result.renewed} connections, synced {result.synced} users")
            else:
                await services.worker.run_forever()
        finally:
            await services.aclose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


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
) -> None:
    """Serve the Upwork sandbox alone, on Upwork's paths with no prefix."""
    from .sandbox import SandboxClient, SandboxConfig, create_sandbox_app

    uris = tuple(redirect_uri or [SANDBOX_REDIRECT_URI])
    config = SandboxConfig(clients=[SandboxClient(client_id, client_secret, uris)])
    base = f"http://{host}:{port}"
    typer.echo("Upwork sandbox")
    typer.echo(f"  authorize:     {base}/ab/account-security/oauth2/authorize")
    typer.echo(f"  token:         {base}/api/v3/oauth2/token")
    typer.echo(f"  graphql:       {base}/graphql")
    typer.echo(f"  client id:     {client_id}")
    typer.echo(f"  client secret: {client_secret}")
    for uri in uris:
        typer.echo(f"  redirect uri:  {uri}")
    uvicorn.run(create_sandbox_app(config), host=host, port=port, server_header=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
