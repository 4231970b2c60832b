"""The sign-in load generator: complete "Sign in with Upwork" flows, as a browser does them,
against Upwork Assistant or the FastAPI-Users peer, through the same Upwork sandbox:
authorize, the consent page, Allow, the callback (code exchange, profile query, user
upsert, session). Runs as its own process on the client core; prints one JSON line.

    python -m bench.signin_client --kind ours --app URL --users ID,ID --seconds 8 --concurrency 8
    python -m bench.signin_client --kind peer --app URL --users ID --count 30
    python -m bench.signin_client --kind ours --app URL --users ID --once   (cookies)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from urllib.parse import urljoin

import httpx

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


class SignInFailed(Exception):
    pass


async def sign_in(client: httpx.AsyncClient, kind: str, app: str, user_id: str) -> float:
    started = time.perf_counter()
    client.cookies.clear()
    if kind == "ours":
        r = await client.get(f"{app}/api/auth/upwork/authorize", params={"redirect": "true"})
        if r.status_code != 302:
            raise SignInFailed(f"authorize {r.status_code}")
        authorize = r.headers["location"]
    else:
        r = await client.get(f"{app}/auth/upwork/authorize")
        if r.status_code != 200:
            raise SignInFailed(f"authorize {r.status_code}")
        authorize = r.json()["authorization_url"]
    page = await client.get(authorize)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    consent_id = re.search(r'name="consent_id" value="([^"]+)"', page.text)
    if page.status_code != 200 or not action or not consent_id:
        raise SignInFailed(f"consent page {page.status_code}")
    r = await client.post(
        urljoin(authorize, action.group(1)),
        data={"consent_id": consent_id.group(1), "user_id": user_id, "decision": "allow"},
    )
    if r.status_code != 302:
        raise SignInFailed(f"consent {r.status_code}")
    done = await client.get(r.headers["location"])
    if kind == "ours":
        if done.status_code != 303 or done.headers.get("location") != "/":
            raise SignInFailed(f"callback {done.status_code} to {done.headers.get('location')}")
    elif done.status_code != 204:
        raise SignInFailed(f"callback {done.status_code}: {done.text[:200]}")
    return time.perf_counter() - started


def new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={"Accept": BROWSER_ACCEPT, "User-Agent": "bench-signin/1.0"},
        timeout=30,
        limits=httpx.Limits(max_keepalive_connections=4),
    )


async def throughput(
    kind: str, app: str, users: list[str], seconds: float, concurrency: int
) -> dict[str, object]:
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        async with new_client() as client:
            n = index
            while time.perf_counter() < deadline:
                try:
                    latencies.append(await sign_in(client, kind, app, users[n % len(users)]))
                except (SignInFailed, httpx.HTTPError) as exc:
                    errors.append(str(exc)[:200])
                n += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "completed": len(latencies),
        "seconds": elapsed,
        "rate": len(latencies) / elapsed,
        "latencies_ms": [round(x * 1000, 2) for x in latencies],
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


async def sequential(kind: str, app: str, users: list[str], count: int) -> dict[str, object]:
    latencies = []
    async with new_client() as client:
        for n in range(count):
            latencies.append(await sign_in(client, kind, app, users[n % len(users)]))
    return {"latencies_ms": [round(x * 1000, 2) for x in latencies]}


async def once(kind: str, app: str, user: str) -> dict[str, object]:
    async with new_client() as client:
        await sign_in(client, kind, app, user)
        return {"cookies": dict(client.cookies.items())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["ours", "peer"], required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--users", required=True)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--count", type=int)
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args()
    users = args.users.split(",")
    if args.once:
        result = asyncio.run(once(args.kind, args.app, users[0]))
    elif args.count:
        result = asyncio.run(sequential(args.kind, args.app, users, args.count))
    else:
        result = asyncio.run(
            throughput(args.kind, args.app, users, args.seconds or 5, args.concurrency)
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
