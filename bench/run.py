"""`make bench`: every measurement of docs/benchmarks.md, on SQLite and on PostgreSQL +
Redis, in one run on this machine, then the page itself.

The servers under test (ours and the FastAPI-Users peer) run one uvicorn worker each,
pinned to core 0; the load generators (wrk, the sign-in client), the Upwork sandbox and
this script run on core 1. Every figure is the median of several rounds after a warm-up,
with its spread; ratios compare figures measured in the same run.

    python -m bench.run [--quick] [--backends sqlite,postgres] [--out docs/benchmarks.md]

PostgreSQL and Redis come from scripts/with-services.sh (TEST_POSTGRES_URL,
TEST_REDIS_URL); without them only SQLite is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from sqlalchemy import create_engine, make_url, text

from . import lib
from .report import write_report
from .seed import seed_to

SANDBOX_CLIENT_ID = "bench-client"
SANDBOX_CLIENT_SECRET = "bench-client-secret-0123456789abcdef"  # noqa: S105 - sandbox only
ALEX, OLENA = "1717171717171717001", "1717171717171717002"
SIGNIN_USERS = f"{ALEX},{OLENA}"
#: Raised so they never trigger, over a one-second window: the moving window keeps one
#: entry per request still in the window, so "1000000/minute" would have the limiter keep
#: lists of up to a minute of load, which the shipped 100/minute never sees.
UNLIMITED = "1000000/second"


@dataclass
class Settings:
    rounds: int = 5
    seconds: int = 5
    connections: int = 16
    signin_seconds: int = 8
    signin_concurrency: int = 8
    storm: int = 200
    latency_signins: int = 40
    growth: tuple[int, int] = (1_000, 100_000)
    revocations: int = 40


QUICK = Settings(rounds=2, seconds=2, signin_seconds=3, latency_signins=5, growth=(200, 2_000))


@dataclass
class Backend:
    name: str
    ours_db: str
    peer_db: str
    redis: str | None
    results: dict[str, Any] = field(default_factory=dict)


def _pg_database(admin_url: str, name: str) -> str:
    """A fresh database on the throwaway server; returns its URL."""
    admin = make_url(admin_url).set(drivername="postgresql+psycopg", database="postgres")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def backends(selected: list[str], work: Path) -> list[Backend]:
    found = []
    if "sqlite" in selected:
        found.append(
            Backend(
                "SQLite",
                f"sqlite:///{work / 'ours.db'}",
                f"sqlite+aiosqlite:///{work / 'peer.db'}",
                None,
            )
        )
    pg, redis = os.environ.get("TEST_POSTGRES_URL"), os.environ.get("TEST_REDIS_URL")
    if "postgres" in selected and pg and redis:
        ours = _pg_database(pg, "bench_ours")
        peer = _pg_database(pg, "bench_peer").replace("postgresql://", "postgresql+asyncpg://", 1)
        found.append(Backend("PostgreSQL + Redis", ours, peer, redis))
    elif "postgres" in selected:
        print("bench: no TEST_POSTGRES_URL/TEST_REDIS_URL: PostgreSQL + Redis skipped")
    return found


class RssSampler:
    """The peak resident memory of a process while a load runs."""

    def __init__(self, server: lib.Server) -> None:
        self.server = server
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss_mib())
            self._stop.wait(0.2)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def rounds(
    cfg: Settings, measures: dict[str, Callable[[], lib.WrkResult]]
) -> dict[str, list[lib.WrkResult]]:
    """Warm each up, then alternate them round by round (so drift hits all alike)."""
    for measure in measures.values():
        measure()
    out: dict[str, list[lib.WrkResult]] = {name: [] for name in measures}
    for _ in range(cfg.rounds):
        for name, measure in measures.items():
            out[name].append(measure())
    return out


def summary(results: list[lib.WrkResult]) -> dict[str, Any]:
    rps = [r.rps for r in results]
    return {
        "rps": lib.median(rps),
        "rps_all": rps,
        "spread": lib.spread(rps),
        "p50_ms": lib.median([r.p50_ms for r in results]),
        "p99_ms": lib.median([r.p99_ms for r in results]),
        "errors": sum(r.errors for r in results),
    }


def signin_client(kind: str, server: lib.Server, users: str, *options: str) -> dict[str, Any]:
    """Runs bench/signin_client.py on the client core; its JSON answer."""
    command = [lib.PYTHON, "-m", "bench.signin_client", "--kind", kind, "--app", server.url]
    return lib.run_json([*command, "--users", users, *options])


def signin_rounds(cfg: Settings, servers: dict[str, tuple[str, lib.Server]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for i in range(cfg.rounds + 1):
        for name, (kind, server) in servers.items():
            cpu = server.cpu_seconds()
            seconds = str(cfg.signin_seconds if i else 2)
            concurrency = str(cfg.signin_concurrency)
            result = signin_client(
                kind, server, SIGNIN_USERS, "--seconds", seconds, "--concurrency", concurrency
            )
            result["server_cpu_ms_per_signin"] = (
                (server.cpu_seconds() - cpu) * 1000 / max(1, int(result["completed"]))
            )
            if i:  # round 0 is the warm-up
                runs[name].append(result)
    for name, results in runs.items():
        rates = [r["rate"] for r in results]
        latencies = [x for r in results for x in r["latencies_ms"]]
        out[name] = {
            "rate": lib.median(rates),
            "rates": rates,
            "spread": lib.spread(rates),
            "p50_ms": lib.percentile(latencies, 50),
            "p99_ms": lib.percentile(latencies, 99),
            "cpu_ms": lib.median([r["server_cpu_ms_per_signin"] for r in results]),
            "errors": sum(int(r["errors"]) for r in results),
            "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
        }
    return out


def cookie_for(kind: str, server: lib.Server, user: str = ALEX) -> dict[str, str]:
    for attempt in range(3):
        try:
            return dict(signin_client(kind, server, user, "--once")["cookies"])
        except subprocess.CalledProcessError as exc:
            print(f"bench: sign-in for a cookie failed ({exc.stderr.strip()[-300:]})", flush=True)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # type: ignore[arg-type]


async def storm(
    server: lib.Server, cookies: dict[str, str], n: int
) -> tuple[list[float], list[int]]:
    """n concurrent "sync my profile" requests for one user; latencies (ms) and statuses."""
    headers = {
        "Accept": "application/json",
        "X-CSRF-Token": cookies["csrf_token"],
        "User-Agent": "bench-storm/1.0",
    }
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(
        base_url=server.url, cookies=cookies, headers=headers, timeout=60, limits=limits
    ) as client:

        async def one() -> tuple[float, int]:
            started = time.perf_counter()
            r = await client.post("/api/upwork/profile/sync")
            return (time.perf_counter() - started) * 1000, r.status_code

        done = await asyncio.gather(*(one() for _ in range(n)))
    return [d[0] for d in done], [d[1] for d in done]


def expire_upwork_access(db_url: str, upwork_id: str) -> None:
    url = db_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE upwork_connections SET access_expires_at = :past WHERE user_id ="
                " (SELECT id FROM users WHERE upwork_id = :uid)"
            ),
            {"past": dt.datetime(2000, 1, 1, tzinfo=dt.UTC), "uid": upwork_id},
        )
    engine.dispose()


def revocation_window(
    ours: lib.Server, db_url: str, samples: int, busy: dict[str, str] | None = None
) -> dict[str, Any]:
    """How long a server that has a session in its cache (auth/session_cache.py) goes on
    accepting it after another process revoked it: a session is signed in and used twice,
    then revoked by plain SQL (as another instance's sign-out would be), and the server is
    asked again and again until it refuses. The figure runs from the revocation's commit
    to that refusal's answer, so it includes one request's own latency. ``busy``: a cookie
    for wrk to load the server with meanwhile (another session's /api/auth/me)."""
    url = db_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    load = None
    if busy:
        seconds = samples  # ample: a sample takes a sign-in and a few requests
        load = subprocess.Popen(  # noqa: S603
            lib.pinned(lib.CLIENT_CORE, ["wrk", "-t1", "-c8", f"-d{seconds}s",
                       "-H", f"Cookie: access_token={busy['access_token']}",
                       ours.url + "/api/auth/me"]),
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    windows: list[float] = []
    late = 0
    try:
        with httpx.Client(base_url=ours.url, timeout=10) as client:
            for _ in range(samples):
                access = cookie_for("ours", ours)["access_token"]
                sid = jwt.decode(access, options={"verify_signature": False})["sid"]
                cookies = {"access_token": access}
                for _ in range(2):
                    assert client.get("/api/auth/me", cookies=cookies).status_code == 200
                with engine.begin() as conn:
                    conn.execute(
                        text("UPDATE sessions SET revoked_at = :now WHERE id = :sid"),
                        {"now": dt.datetime.now(dt.UTC), "sid": sid},
                    )
                committed = time.perf_counter()
                first = True
                while client.get("/api/auth/me", cookies=cookies).status_code != 401:
                    first = False
                windows.append((time.perf_counter() - committed) * 1000)
                late += not first
    finally:
        if load is not None:
            load.terminate()
            load.wait(10)
        engine.dispose()
    return {
        "samples": samples,
        "p50_ms": lib.percentile(windows, 50),
        "p99_ms": lib.percentile(windows, 99),
        "max_ms": max(windows),
        "answered_after": late,
    }


def run_backend(backend: Backend, cfg: Settings, work: Path, profile: bool) -> None:
    log_dir = work / backend.name.split()[0].lower()
    log_dir.mkdir()
    sandbox_port, ours_port, peer_port = lib.free_port(), lib.free_port(), lib.free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    ours_url, peer_url = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{peer_port}"
    upwork = {
        "UPWORK_CLIENT_ID": SANDBOX_CLIENT_ID,
        "UPWORK_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
        "UPWORK_AUTHORIZE_URL": f"{sandbox_url}/ab/account-security/oauth2/authorize",
        "UPWORK_TOKEN_URL": f"{sandbox_url}/api/v3/oauth2/token",
        "UPWORK_GRAPHQL_URL": f"{sandbox_url}/graphql",
    }
    sandbox_log = (log_dir / "sandbox.log").open("ab")
    sandbox_command = [
        *(lib.PYTHON, "-m", "upwork_assistant.cli", "sandbox", "--port", str(sandbox_port)),
        *("--client-id", SANDBOX_CLIENT_ID, "--client-secret", SANDBOX_CLIENT_SECRET),
        *("--redirect-uri", f"{ours_url}/api/auth/upwork/callback"),
        *("--redirect-uri", f"{peer_url}/auth/upwork/callback"),
        # Both sides ask for the same profile (email and organization included), so the key
        # grants everything; each side then does the same calls per sign-in.
        *("--scopes", "all"),
    ]
    sandbox = subprocess.Popen(  # noqa: S603 - our own CLI
        lib.pinned(lib.CLIENT_CORE, sandbox_command),
        stdout=sandbox_log,
        stderr=sandbox_log,
        cwd=lib.ROOT,
    )
    ours_env = {
        **upwork,
        "APP_BASE_URL": ours_url,
        "DATABASE_URL": backend.ours_db,
        "DATA_DIR": str(log_dir / "data"),
        "SIGNIN_RATE_LIMIT": UNLIMITED,
        "API_RATE_LIMIT": UNLIMITED,
        "PROFILE_SYNC_RATE_LIMIT": UNLIMITED,
        "UPWORK_RATE_LIMIT": "100000/second",
        # The measured request paths only; the upkeep loop runs once a minute otherwise.
        "WORKER_IN_SERVE": "false",
    }
    if backend.redis:
        ours_env["REDIS_URL"] = backend.redis
        import redis

        redis.Redis.from_url(backend.redis).flushdb()
    subprocess.run(  # noqa: S603
        [lib.PYTHON, "-m", "upwork_assistant.cli", "db", "upgrade"],
        env={**os.environ, **ours_env},
        check=True,
        capture_output=True,
        cwd=lib.ROOT,
    )
    ours = lib.Server("ours", "upwork_assistant.app:create_app", ours_env, ours_port, factory=True)
    peer = lib.Server(
        "peer",
        "bench.peers.fastapi_users_app:app",
        {**upwork, "PEER_DATABASE_URL": backend.peer_db, "PEER_BASE_URL": peer_url},
        peer_port,
    )
    results = backend.results
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                httpx.get(sandbox_url + "/_sandbox/stats", timeout=1)
                # Load from one address: Upwork's per-IP limit is not what is measured.
                httpx.patch(sandbox_url + "/_sandbox/faults", json={"ip_rate_limit": 0})
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        ours.start(log_dir)
        peer.start(log_dir)
        time.sleep(1)
        results["rss_idle"] = {"ours": ours.rss_mib(), "peer": peer.rss_mib()}

        # 1 and 2a: the per-request auth path, against /healthz and against the peer.
        ours_cookie = cookie_for("ours", ours)
        peer_cookie = cookie_for("peer", peer)
        ours_me = {"Cookie": f"access_token={ours_cookie['access_token']}"}
        peer_me = {"Cookie": f"fastapiusersauth={peer_cookie['fastapiusersauth']}"}

        def load(url: str, headers: dict[str, str] | None = None) -> Callable[[], lib.WrkResult]:
            return lambda: lib.wrk(
                url, seconds=cfg.seconds, connections=cfg.connections, headers=headers
            )

        with RssSampler(ours) as ours_rss, RssSampler(peer) as peer_rss:
            measured = rounds(
                cfg,
                {
                    "ours_healthz": load(ours.url + "/healthz"),
                    "ours_me": load(ours.url + "/api/auth/me", ours_me),
                    "peer_healthz": load(peer.url + "/healthz"),
                    "peer_me": load(peer.url + "/users/me", peer_me),
                },
            )
        results["auth"] = {name: summary(r) for name, r in measured.items()}
        results["rss_load"] = {"ours": ours_rss.peak, "peer": peer_rss.peak}

        if profile:
            results["profile"] = profile_me(ours, ours_me, cfg, log_dir)

        # 1 again, with the server as the README starts it: `upwork-assistant serve`
        # (uvicorn's access log on, our logging), its output to a file.
        served = lib.Server(
            "ours-serve",
            "",
            ours_env,
            command=[lib.PYTHON, "-m", "upwork_assistant.cli", "serve", "--host", "127.0.0.1",
                     "--port", "{port}"],
        )  # fmt: skip
        try:
            served.start(log_dir)
            measured = rounds(
                cfg,
                {
                    "serve_healthz": load(served.url + "/healthz"),
                    "serve_me": load(served.url + "/api/auth/me", ours_me),
                },
            )
            results["serve"] = {name: summary(r) for name, r in measured.items()}
        finally:
            served.stop()

        # How long a revocation elsewhere takes to reach this server's session cache.
        results["revocation"] = {
            "idle": revocation_window(ours, backend.ours_db, cfg.revocations),
            "busy": revocation_window(ours, backend.ours_db, cfg.revocations, ours_cookie),
        }

        # 2b: complete sign-ins per second through the sandbox.
        results["signin"] = signin_rounds(cfg, {"ours": ("ours", ours), "peer": ("peer", peer)})

        # 3: the refresh storm.
        storm_cookie = cookie_for("ours", ours, OLENA)
        before = httpx.get(sandbox_url + "/_sandbox/stats").json().get("token_refresh", 0)
        expire_upwork_access(backend.ours_db, OLENA)
        expired_ms, expired_status = asyncio.run(storm(ours, storm_cookie, cfg.storm))
        after = httpx.get(sandbox_url + "/_sandbox/stats").json().get("token_refresh", 0)
        fresh_ms, fresh_status = asyncio.run(storm(ours, storm_cookie, cfg.storm))
        results["storm"] = {
            "refreshes": after - before,
            "expired": {
                "p50": lib.percentile(expired_ms, 50),
                "p99": lib.percentile(expired_ms, 99),
                "ok": sum(s == 200 for s in expired_status),
            },
            "fresh": {
                "p50": lib.percentile(fresh_ms, 50),
                "p99": lib.percentile(fresh_ms, 99),
                "ok": sum(s == 200 for s in fresh_status),
            },
        }

        # 4: growth: the same measurements with 1,000 and with 100,000 users and sessions.
        growth = {}
        for total in cfg.growth:
            started = time.perf_counter()
            asyncio.run(seed_to(backend.ours_db, total))
            seeded_in = time.perf_counter() - started
            access = cookie_for("ours", ours)["access_token"]
            me_url = ours.url + "/api/auth/me"
            me = rounds(cfg, {"me": load(me_url, {"Cookie": f"access_token={access}"})})["me"]
            signin_client("ours", ours, SIGNIN_USERS, "--count", "5")  # warm-up
            latencies = signin_client(
                "ours", ours, SIGNIN_USERS, "--count", str(cfg.latency_signins)
            )["latencies_ms"]
            growth[total] = {
                "me": summary(me),
                "signin_p50_ms": lib.percentile(latencies, 50),  # type: ignore[arg-type]
                "signin_p90_ms": lib.percentile(latencies, 90),  # type: ignore[arg-type]
                "seeded_seconds": seeded_in,
            }
        results["growth"] = growth
    finally:
        ours.stop()
        peer.stop()
        sandbox.terminate()
        sandbox.wait(10)
        sandbox_log.close()


def profile_me(
    ours: lib.Server, headers: dict[str, str], cfg: Settings, log_dir: Path
) -> dict[str, Any]:
    """py-spy samples the server while wrk loads /api/auth/me: where the time goes."""
    raw = log_dir / "profile-me.txt"
    spy_command = [
        *(str(Path(lib.PYTHON).parent / "py-spy"), "record", "--pid", str(ours.pid)),
        *("--format", "raw", "--output", str(raw), "--rate", "200", "--nonblocking"),
        *("--duration", str(cfg.seconds + 1)),
    ]
    spy = subprocess.Popen(  # noqa: S603
        lib.pinned(lib.CLIENT_CORE, spy_command),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    lib.wrk(
        ours.url + "/api/auth/me", seconds=cfg.seconds, connections=cfg.connections, headers=headers
    )
    spy.wait(30)
    return top_frames(raw)


#: Where the auth path's time is worth showing: our code and the libraries it calls.
LIBRARIES = (
    "upwork_assistant/", "site-packages/jwt/", "sqlalchemy/orm/session.py",
    "sqlalchemy/engine/base.py", "site-packages/limits/", "site-packages/redis/asyncio",
    "site-packages/asyncpg/connection.py", "site-packages/aiosqlite/",
)  # fmt: skip


def top_frames(raw: Path, count: int = 14) -> dict[str, Any]:
    """The functions with most samples on the stack (inclusive), from py-spy's raw output:
    our own code and the libraries on the auth path, one row a function."""
    if not raw.exists():
        return {"total": 0, "top": []}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        n = int(samples)
        total += n
        seen = set()
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            path = where.rsplit(":", 1)[0]
            if not any(part in path for part in LIBRARIES) or "__call__" in name:
                continue  # other code, or a middleware (it wraps the whole request)
            key = f"{name} ({'/'.join(path.split('/')[-2:])})"
            if key not in seen:
                seen.add(key)
                inclusive[key] = inclusive.get(key, 0) + n
    interesting = sorted(inclusive.items(), key=lambda kv: -kv[1])
    return {
        "total": total,
        "top": [(k, round(v / total * 100, 1)) for k, v in interesting[:count]] if total else [],
    }


def machine() -> dict[str, str]:
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout  # noqa: S607
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": str(lib.CORES),
        "cpu": model,
        "memory": mem,
        "python": platform.python_version(),
        "os": platform.platform(),
        "wrk": (wrk_version.split()[1] if wrk_version else "?"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="short rounds, small growth")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--out", default=str(lib.ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--json", default=str(lib.ROOT / "bench" / "results.json"))
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--growth", help="e.g. 1000,100000: the two database sizes")
    args = parser.parse_args()
    cfg = QUICK if args.quick else Settings()
    if args.growth:
        small, large = (int(x) for x in args.growth.split(","))
        cfg = dataclasses.replace(cfg, growth=(small, large))

    if lib.CORES > 1:
        os.sched_setaffinity(0, {int(lib.CLIENT_CORE)})  # this script and its helpers
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="ua-bench-") as tmp:
        work = Path(tmp)
        found = backends(args.backends.split(","), work)
        for backend in found:
            print(f"bench: {backend.name} ...", flush=True)
            run_backend(backend, cfg, work, profile=not args.no_profile)
            print(json.dumps(backend.results, default=str)[:400], flush=True)
    info = machine()
    info["duration"] = f"{(time.time() - started) / 60:.1f} min"
    info["settings"] = (
        f"{cfg.rounds} rounds of {cfg.seconds} s after a warm-up, {cfg.connections} connections;"
        f" sign-ins: {cfg.rounds} rounds of {cfg.signin_seconds} s, {cfg.signin_concurrency}"
        f" concurrent flows; storm: {cfg.storm} requests"
    )
    data = {"machine": info, "backends": {b.name: b.results for b in found}}
    Path(args.json).write_text(json.dumps(data, indent=1, default=str))
    write_report(data, Path(args.out), quick=args.quick)
    print(f"bench: wrote {args.out} in {info['duration']}")


if __name__ == "__main__":
    main()
