"""``upwork-assistant upwork check``: what a real API key shows, settled on the first day.

What we cannot learn from here (the evidence is silent or old) is observed with the
operator's own key: the endpoints and TLS, the exact callback URL, which fields of the
product's query the key's scopes refuse, which way to the freelancer profile the key
answers (under ``user`` or by profile key), the token lifetimes, whether the authorize step
accepts PKCE, whether refresh rotates and the old refresh token keeps working, whether
HTTP Basic is accepted on refresh, and whether a bad access token gets 401 or an
authentication error inside a 200. Nothing secret is printed: tokens and codes never
leave this module's variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from ..config import Settings
from .errors import UpworkError, UpworkScopeError, UpworkUnauthorized
from .graphql import UpworkGraphQLClient, classify
from .oauth import TokenSet, UpworkOAuthClient
from .queries import FREELANCER_PARTS, PROFILE, Fetched, features_of, fetch_granted

Say = Callable[[str], None]
CALLBACK_PAGE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
    b"upwork check has the answer. You can close this window.\n"
)


@dataclass
class Report:
    callback_url: str
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    sign_in: dict[str, Any] = field(default_factory=dict)
    pkce: str = "not tested"
    tokens: dict[str, Any] = field(default_factory=dict)
    scopes: dict[str, Any] = field(default_factory=dict)
    freelancer_profile: dict[str, Any] = field(default_factory=dict)
    refresh: dict[str, Any] = field(default_factory=dict)
    bad_token: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "callback_url": self.callback_url,
            "endpoints": self.endpoints,
            "sign_in": self.sign_in,
            "pkce": self.pkce,
            "tokens": self.tokens,
            "scopes": self.scopes,
            "freelancer_profile": self.freelancer_profile,
            "refresh": self.refresh,
            "bad_token": self.bad_token,
            "problems": self.problems,
            "ok": not self.problems,
        }


async def check_endpoints(settings: Settings, http: httpx.AsyncClient) -> dict[str, Any]:
    """Each endpoint answers over TLS (any HTTP answer counts: we send no credentials)."""
    found: dict[str, Any] = {}
    for name, url, method in (
        ("authorize", settings.authorize_url, "GET"),
        ("token", settings.token_url, "POST"),
        ("graphql", settings.graphql_url, "POST"),
    ):
        entry: dict[str, Any] = {"url": url, "tls": url.startswith("https://")}
        try:
            resp = await http.request(method, url, timeout=settings.upwork_http_timeout)
            entry.update(reachable=True, status=resp.status_code)
        except httpx.HTTPError as exc:
            entry.update(reachable=False, error=type(exc).__name__)
        found[name] = entry
    return found


class CallbackCatcher:
    """The URL Upwork sends the browser back to: caught on the redirect URI when it is on
    this machine and its port is free, or pasted by the operator; whichever comes first.

    Listening starts on entering, before the authorize URL is shown: a browser (or a test's
    operator) that is quick to click Allow must never find nobody listening yet."""

    def __init__(self, redirect_uri: str) -> None:
        self._parts = urlsplit(redirect_uri)
        self._redirect_uri = redirect_uri
        self._server: asyncio.Server | None = None
        #: On this machine, so the browser's redirect can be caught here.
        self._local = self._parts.scheme == "http" and self._parts.hostname in (
            "127.0.0.1",
            "localhost",
            "::1",
        )

    async def __aenter__(self) -> CallbackCatcher:
        self._got: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if self._local:
            with contextlib.suppress(OSError):  # the port is busy: the operator pastes
                self._server = await asyncio.start_server(
                    self._on_connection,
                    self._parts.hostname,
                    self._parts.port or 80,
                    reuse_address=True,
                )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.close()
        self._got.cancel()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        line = (await reader.readline()).decode("latin-1").split(" ")
        writer.write(CALLBACK_PAGE)
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()
        parts = self._parts
        if len(line) >= 2 and line[1].startswith(parts.path) and not self._got.done():
            self._got.set_result(f"{parts.scheme}://{parts.netloc}{line[1]}")

    async def wait(self, wait: float, say: Say) -> str:
        if self._server is not None:
            say(f"Waiting for the callback on {self._redirect_uri} (or paste the URL here).")
        elif self._local:
            say("The redirect URI's port is busy: paste the URL the browser ends on.")
        else:
            say("Paste the full URL the browser ends on after you click Allow:")
        got, paste = self._got, _read_line()
        while True:
            done, _ = await asyncio.wait({got, paste}, timeout=wait, return_when="FIRST_COMPLETED")
            if not done:
                raise TimeoutError("no callback arrived in time")
            if got in done:
                return got.result()
            pasted = paste.result().strip()
            if pasted:
                return pasted
            if self._server is None:
                raise TimeoutError("nothing was pasted")
            paste = asyncio.get_running_loop().create_future()  # stdin closed: listen on


def _read_line() -> asyncio.Future[str]:
    """A line from standard input, read by a daemon thread (an executor thread would keep
    the command from exiting while nobody types)."""
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        try:
            text = sys.stdin.readline()
        except (OSError, ValueError):
            text = ""
        loop.call_soon_threadsafe(lambda: None if line.done() else line.set_result(text))

    threading.Thread(target=read, daemon=True).start()
    return line


async def _sign_in(
    oauth: UpworkOAuthClient, settings: Settings, wait: float, say: Say
) -> tuple[dict[str, list[str]], str, str]:
    """One authorization round: the callback's query, the state sent and the verifier."""
    request = oauth.authorization_request()
    async with CallbackCatcher(settings.redirect_uri) as callback:
        say("Open this URL in a browser signed in to Upwork, and click Allow:")
        say(f"AUTHORIZE_URL {request.url}")
        url = await callback.wait(wait, say)
    return parse_qs(urlsplit(url).query), request.state, request.code_verifier


async def run_check(
    settings: Settings,
    http: httpx.AsyncClient,
    oauth_for: Callable[[bool], UpworkOAuthClient],
    graphql: UpworkGraphQLClient,
    say: Say,
    wait: float = 300.0,
) -> Report:
    report = Report(callback_url=settings.redirect_uri)
    say(f"Register this exact callback URL with the key: {settings.redirect_uri}")
    report.endpoints = await check_endpoints(settings, http)
    for name, entry in report.endpoints.items():
        if not entry["reachable"]:
            report.problems.append(f"{name} endpoint unreachable ({entry.get('error')})")
        elif not entry["tls"]:
            report.problems.append(f"{name} endpoint is not https")

    tokens = await _authorize(report, settings, oauth_for, wait, say)
    if tokens is None:
        return report
    fetched = await _check_scopes(report, graphql, tokens)
    if fetched is not None:
        report.freelancer_profile = await _check_freelancer(graphql, tokens, fetched)
    await _check_refresh(report, settings, http, oauth_for(True), tokens)
    report.bad_token = await _token_answer(
        http, settings.graphql_url, "invalid-" + secrets.token_urlsafe(24)
    )
    return report


async def _authorize(
    report: Report,
    settings: Settings,
    oauth_for: Callable[[bool], UpworkOAuthClient],
    wait: float,
    say: Say,
) -> TokenSet | None:
    """Sign in with PKCE; when the authorize or token step refuses it, once more without."""
    for pkce in (True, False):
        oauth = oauth_for(pkce)
        try:
            query, state, verifier = await _sign_in(oauth, settings, wait, say)
        except TimeoutError:
            report.problems.append(
                f"no callback arrived within {wait:.0f} s (after a Deny, Upwork may keep "
                "the browser on its own page instead of redirecting back)"
            )
            return None
        error = next(iter(query.get("error") or []), None)
        if next(iter(query.get("state") or []), None) != state:
            report.problems.append("the callback's state does not match the request")
            return None
        if error:
            description = (query.get("error_description") or [""])[0][:200]
            report.sign_in = {"error": error, "error_description": description}
            if pkce and ("pkce" in description.lower() or "code_challenge" in description):
                report.pkce = "rejected"
                say("Upwork refused PKCE; signing in once more without it.")
                continue
            if error == "access_denied":
                report.problems.append("access was denied on Upwork (Deny redirects back)")
            else:
                report.problems.append(f"the authorize step failed: {error}")
            return None
        try:
            tokens = await oauth.exchange_code((query.get("code") or [""])[0], verifier)
        except UpworkError as exc:
            report.sign_in = {"error": exc.code, "upwork_message": exc.upwork_message}
            if pkce and "pkce" in (exc.upwork_message or "").lower():
                report.pkce = "rejected at the token endpoint"
                continue
            report.problems.append(f"the code exchange failed: {exc.code}")
            return None
        report.sign_in = {"ok": True, "pkce_sent": pkce}
        if pkce:
            report.pkce = "accepted"
        report.tokens = {
            "token_type": tokens.token_type,
            "expires_in": tokens.expires_in_as_sent,
            "refresh_token": tokens.refresh_token is not None,
            "scope": tokens.scope,
        }
        return tokens
    report.problems.append("sign-in failed with and without PKCE")
    return None


async def _check_scopes(
    report: Report, graphql: UpworkGraphQLClient, tokens: TokenSet
) -> Fetched | None:
    async def run(query: str) -> dict[str, Any]:
        return await graphql.execute(tokens.access_token, query, allow_partial=True)

    asked = PROFILE.paths()
    try:
        fetched = await fetch_granted(run, PROFILE)
    except UpworkScopeError as exc:
        report.scopes = {
            "query": PROFILE.name,
            "refused": exc.refused,
            "upwork_message": exc.upwork_message,
        }
        report.problems.append("the key's scopes refuse the user's identity: sign-in fails")
        return None
    except UpworkError as exc:
        report.problems.append(f"the profile query failed: {exc.code} {exc.upwork_message}")
        return None
    org = fetched.data.get("organization")
    report.scopes = {
        "query": PROFILE.name,
        "fields": {path: path not in fetched.refused for path in asked},
        "refused": fetched.refused,
        "features_missing": features_of(fetched.refused),
        # Declared non-null yet answered null (the profile was asked again without them).
        "nulled": fetched.nulled,
        "upwork_message": fetched.upwork_message,
        "organization_type": org.get("type") if isinstance(org, dict) else None,
        "organization_legacy_type": org.get("legacyType") if isinstance(org, dict) else None,
    }
    return fetched


#: The other way to a freelancer profile in Upwork's schema:
#: ``Query.freelancerProfileByProfileKey(profileKey:)``, the key being the user's
#: ciphertext. The product asks ``user { freelancerProfile }``, which comes with the
#: identity in one request; the check tells which of the two the real key answers.
BY_PROFILE_KEY = (
    "query freelancerByKey($key: String!) "
    "{ freelancerProfileByProfileKey(profileKey: $key) { fullName personalData { title } } }"
)


async def _check_freelancer(
    graphql: UpworkGraphQLClient, tokens: TokenSet, fetched: Fetched
) -> dict[str, Any]:
    """Which way to the freelancer profile this key and schema allow: under ``user`` (what
    the product asks), by profile key, both or neither; and which parts are refused."""
    answered = fetched.data.get("user")
    user: dict[str, Any] = answered if isinstance(answered, dict) else {}
    if "freelancerProfile" in user:
        via_user = "present" if isinstance(user["freelancerProfile"], dict) else "null"
    else:
        via_user = "refused"
    found: dict[str, Any] = {
        "user.freelancerProfile": via_user,
        "parts_missing": [p for p in features_of(fetched.refused) if p in FREELANCER_PARTS],
    }
    key = user.get("ciphertext")
    if not isinstance(key, str) or not key:
        found["freelancerProfileByProfileKey"] = "not tried (no profile key)"
        return found
    try:
        data = await graphql.execute(tokens.access_token, BY_PROFILE_KEY, {"key": key})
    except UpworkScopeError:
        found["freelancerProfileByProfileKey"] = "refused"
    except UpworkError as exc:
        found["freelancerProfileByProfileKey"] = f"error: {exc.upwork_message or exc.code}"
    else:
        answered = isinstance(data.get("freelancerProfileByProfileKey"), dict)
        found["freelancerProfileByProfileKey"] = "present" if answered else "null"
    return found


async def _attempt(call: Awaitable[TokenSet]) -> tuple[TokenSet | None, str | None]:
    try:
        return await call, None
    except UpworkError as exc:
        return None, exc.upwork_message or exc.code


async def _check_refresh(
    report: Report,
    settings: Settings,
    http: httpx.AsyncClient,
    oauth: UpworkOAuthClient,
    first: TokenSet,
) -> None:
    if not first.refresh_token:
        report.refresh = {"refresh_token_sent": False}
        return
    second, error = await _attempt(oauth.refresh(first.refresh_token))
    if second is None:
        report.refresh = {"body_credentials": f"refused: {error}"}
        report.problems.append("refresh with body credentials failed")
        return
    rotates = second.refresh_token != first.refresh_token
    found: dict[str, Any] = {"body_credentials": "accepted", "rotates": rotates}
    latest = second
    if rotates:
        third, error = await _attempt(oauth.refresh(first.refresh_token))
        found["old_refresh_token_after_rotation"] = "accepted" if third else f"refused: {error}"
        latest = third or latest
    basic, error = await _attempt(oauth.refresh_with_basic(latest.refresh_token or ""))
    found["basic_credentials"] = "accepted" if basic else f"refused: {error}"
    found["old_access_token_after_refresh"] = await _token_answer(
        http, settings.graphql_url, first.access_token
    )
    report.refresh = found


async def _token_answer(http: httpx.AsyncClient, url: str, token: str) -> dict[str, Any]:
    """How Upwork answers a query with this access token: works, 401, or 200-with-errors."""
    try:
        resp = await http.post(
            url,
            json={"query": "query check { user { id } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
    except httpx.HTTPError as exc:
        return {"answer": "unreachable", "error": type(exc).__name__}
    try:
        body = resp.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if resp.status_code == 200 and not errors:
        return {"answer": "works", "status": 200}
    message = None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        message = str(errors[0].get("message", ""))[:200]
    if resp.status_code == 200:
        kind = "200 with an authentication error"
        if not isinstance(classify(errors if isinstance(errors, list) else []), UpworkUnauthorized):
            kind = "200 with another error"
        return {"answer": kind, "status": 200, "upwork_message": message}
    return {"answer": str(resp.status_code), "status": resp.status_code, "upwork_message": message}


def human(report: dict[str, Any]) -> str:
    """The report as lines for a person."""
    lines = [f"Callback URL to register: {report['callback_url']}", "", "Endpoints:"]
    for name, entry in report["endpoints"].items():
        state = f"HTTP {entry['status']}" if entry.get("reachable") else entry.get("error")
        lines.append(f"  {name:9} {entry['url']}  {'TLS' if entry['tls'] else 'NO TLS'}  {state}")
    lines += ["", f"Sign-in: {report['sign_in']}", f"PKCE: {report['pkce']}"]
    if report["tokens"]:
        t = report["tokens"]
        lines.append(f"Tokens: expires_in {t['expires_in']}, refresh token: {t['refresh_token']}")
    scopes = report["scopes"]
    if scopes.get("fields"):
        lines.append(f"Query '{scopes['query']}', field by field:")
        lines += [
            f"  {'granted' if ok else 'REFUSED'}  {path}" for path, ok in scopes["fields"].items()
        ]
        if scopes["refused"]:
            lines.append(f"  features without data: {', '.join(scopes['features_missing'])}")
            lines.append(f"  Upwork said: {scopes['upwork_message']}")
        if scopes.get("nulled"):
            lines.append(f"  answered null despite the schema: {', '.join(scopes['nulled'])}")
        lines.append(
            f"  organization type: {scopes['organization_type']!r}, "
            f"legacy type: {scopes['organization_legacy_type']!r}"
        )
    profile = report.get("freelancer_profile") or {}
    if profile:
        lines.append(
            f"Freelancer profile: under user {profile['user.freelancerProfile']}, "
            f"by profile key {profile['freelancerProfileByProfileKey']}"
        )
        if profile["parts_missing"]:
            lines.append(f"  parts the key does not grant: {', '.join(profile['parts_missing'])}")
    for key, value in report["refresh"].items():
        lines.append(f"Refresh, {key.replace('_', ' ')}: {value}")
    if report["bad_token"]:
        lines.append(f"An invalid access token gets: {report['bad_token']['answer']}")
    lines.append("")
    lines += [f"PROBLEM: {p}" for p in report["problems"]] or ["OK: no problems found"]
    return "\n".join(lines)
