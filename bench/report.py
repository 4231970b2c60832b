"""docs/benchmarks.md from the figures of one `make bench` run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

GOALS = {
    "auth": 0.8,
    "peer_me": 1.0,
    "peer_signin": 1.0,
    "growth": 0.10,
}


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def goals_table(backends: dict[str, Any]) -> list[str]:
    names = list(backends)
    rows = ["| Goal | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label: str, cell: Any) -> None:
        rows.append(f"| {label} | " + " | ".join(cell(backends[n]) for n in names) + " |")

    def auth(b: dict[str, Any]) -> str:
        r = b["auth"]["ours_me"]["rps"] / b["auth"]["ours_healthz"]["rps"]
        return f"{r:.2f} ({_verdict(r >= GOALS['auth'])})"

    def peer_me(b: dict[str, Any]) -> str:
        r = b["auth"]["ours_me"]["rps"] / b["auth"]["peer_me"]["rps"]
        return f"{r:.2f} ({_verdict(r >= GOALS['peer_me'])})"

    def peer_signin(b: dict[str, Any]) -> str:
        r = b["signin"]["ours"]["rate"] / b["signin"]["peer"]["rate"]
        return f"{r:.2f} ({_verdict(r >= GOALS['peer_signin'])})"

    def storm(b: dict[str, Any]) -> str:
        n = b["storm"]["refreshes"]
        return f"{n} ({_verdict(n == 1)})"

    def growth_me(b: dict[str, Any]) -> str:
        small, large = list(b["growth"].values())
        change = large["me"]["rps"] / small["me"]["rps"] - 1
        return f"{change:+.1%} ({_verdict(abs(change) <= GOALS['growth'])})"

    def growth_signin(b: dict[str, Any]) -> str:
        small, large = list(b["growth"].values())
        change = large["signin_p50_ms"] / small["signin_p50_ms"] - 1
        return f"{change:+.1%} ({_verdict(abs(change) <= GOALS['growth'])})"

    row("1. `/api/auth/me` ÷ `/healthz` requests/s, at least 0.80", auth)
    row("2. our `/api/auth/me` ÷ FastAPI-Users `/users/me`, at least 1.00", peer_me)
    row("2. our sign-ins/s ÷ FastAPI-Users + httpx-oauth sign-ins/s, at least 1.00", peer_signin)
    row("3. Upwork refreshes for 200 concurrent requests, exactly 1", storm)
    row("4. `/api/auth/me` requests/s, large vs small database, within ±10%", growth_me)
    row("4. sign-in latency (median), large vs small database, within ±10%", growth_signin)
    return rows


def write_report(data: dict[str, Any], out: Path, quick: bool = False) -> None:
    m = data["machine"]
    backends: dict[str, Any] = data["backends"]
    lines = [
        "# Benchmarks",
        "",
        "Measured by `make bench` (bench/run.py); this page is written by that run, figures",
        "and all. Benchmarks are not tests: they print figures and never fail the suite.",
        "",
    ]
    if quick:
        lines += ["> **Quick run** (`--quick`): short rounds and small databases; figures are",
                  "> rough. `make bench` makes the full page.", ""]  # fmt: skip
    lines += [
        "| Machine | |",
        "|---|---|",
        f"| Date | {m['date']} |",
        f"| CPU | {m['cores']} cores, {m['cpu']} |",
        f"| Memory | {m['memory']} |",
        f"| Python | {m['python']} |",
        f"| OS | {m['os']} |",
        f"| Load generator | wrk {m['wrk']}; the sign-in client in Python (httpx) |",
        f"| Rounds | {m['settings']} |",
        f"| Whole run | {m['duration']} |",
        "",
        "How: each server under test is one uvicorn worker (no access log) pinned to core 0;",
        "wrk, the sign-in client, the Upwork sandbox and the harness run on core 1 (with",
        "PostgreSQL and Redis, those servers share the machine too). Every figure is the",
        "median of the rounds after a warm-up; the spread is half the range, as a share",
        "of the median. Ours and the peer run the same rounds alternately, so drift hits",
        "both alike. Our app runs as shipped: audit log, rate limits (raised so they never",
        "trigger), encrypted Upwork tokens, JSON logging.",
        "",
        "## Goals",
        "",
        *goals_table(backends),
        "",
    ]
    for name, b in backends.items():
        a = b["auth"]
        lines += [
            f"## {name}",
            "",
            "### 1, 2. The per-request auth path",
            "",
            "A signed-in `GET` with the access-token cookie: ours verifies the EdDSA JWT,",
            "checks the session and user rows (revocation, blocking) and the per-user rate",
            "limit; FastAPI-Users verifies its HS256 JWT and loads the user row.",
            "",
            "| Endpoint | Requests/s | Spread | p50 | p99 | Errors |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for key, label in (
            ("ours_healthz", "ours `GET /healthz`"),
            ("ours_me", "ours `GET /api/auth/me`"),
            ("peer_healthz", "FastAPI-Users app `GET /healthz`"),
            ("peer_me", "FastAPI-Users `GET /users/me`"),
        ):
            r = a[key]
            lines.append(
                f"| {label} | {_n(r['rps'])} | {r['spread']} | {r['p50_ms']:.2f} ms |"
                f" {r['p99_ms']:.2f} ms | {r['errors']} |"
            )
        lines += [
            "",
            f"Ratios: ours `/api/auth/me` ÷ ours `/healthz` = "
            f"**{a['ours_me']['rps'] / a['ours_healthz']['rps']:.2f}**; ours `/api/auth/me` ÷"
            f" FastAPI-Users `/users/me` = **{a['ours_me']['rps'] / a['peer_me']['rps']:.2f}**"
            f" (FastAPI-Users' own `/users/me` ÷ `/healthz` ="
            f" {a['peer_me']['rps'] / a['peer_healthz']['rps']:.2f}).",
            "",
            "### 2. Complete sign-ins through the sandbox",
            "",
            "Each: authorize, the consent page, Allow, the callback (code exchange at the",
            "token endpoint, the GraphQL profile query, user upsert, session cookies).",
            "",
            "| | Sign-ins/s | Spread | p50 | p99 | Server CPU per sign-in | Errors |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for key, label in (("ours", "ours"), ("peer", "FastAPI-Users + httpx-oauth")):
            s = b["signin"][key]
            lines.append(
                f"| {label} | {s['rate']:.1f} | {s['spread']} | {s['p50_ms']:.1f} ms |"
                f" {s['p99_ms']:.1f} ms | {s['cpu_ms']:.1f} ms | {s['errors']} |"
            )
        st = b["storm"]
        ours_s, peer_s = b["signin"]["ours"], b["signin"]["peer"]
        lines += [
            "",
            f"Ratio ours ÷ peer: **{ours_s['rate'] / peer_s['rate']:.2f}** sign-ins/s; server"
            f" CPU per sign-in ours ÷ peer: {ours_s['cpu_ms'] / peer_s['cpu_ms']:.2f}.",
            "",
            "### 3. Refresh storm",
            "",
            "200 concurrent `POST /api/upwork/profile/sync` for one user whose Upwork access",
            "token has expired, then the same 200 with the fresh token.",
            "",
            "| | Refreshes at Upwork | Answered 200 | p50 | p99 |",
            "|---|---:|---:|---:|---:|",
            f"| expired token | {st['refreshes']} | {st['expired']['ok']} |"
            f" {st['expired']['p50']:.0f} ms | {st['expired']['p99']:.0f} ms |",
            f"| fresh token | 0 | {st['fresh']['ok']} | {st['fresh']['p50']:.0f} ms |"
            f" {st['fresh']['p99']:.0f} ms |",
            "",
            "### 4. Growth",
            "",
            "| Users and sessions | `/api/auth/me` requests/s | Spread | Sign-in p50 |"
            " Sign-in p90 |",
            "|---:|---:|---:|---:|---:|",
        ]
        for total, g in b["growth"].items():
            lines.append(
                f"| {_n(int(total))} | {_n(g['me']['rps'])} | {g['me']['spread']} |"
                f" {g['signin_p50_ms']:.1f} ms | {g['signin_p90_ms']:.1f} ms |"
            )
        lines += [
            "",
            "### 5. Memory",
            "",
            "| Process | Resident, idle | Resident, peak under load |",
            "|---|---:|---:|",
            f"| ours | {b['rss_idle']['ours']:.0f} MiB | {b['rss_load']['ours']:.0f} MiB |",
            f"| FastAPI-Users | {b['rss_idle']['peer']:.0f} MiB |"
            f" {b['rss_load']['peer']:.0f} MiB |",
            "",
        ]
        profile = b.get("profile")
        if profile and profile.get("top"):
            lines += [
                "### Where `/api/auth/me` spends its time",
                "",
                f"py-spy, {profile['total']} samples of the server under the `/api/auth/me`"
                " load; share of samples with the function on the stack:",
                "",
                "| Function | Share |",
                "|---|---:|",
                *[f"| `{name}` | {share}% |" for name, share in profile["top"]],
                "",
            ]
    notes = Path(__file__).with_name("NOTES.md")
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    out.write_text("\n".join(lines))
