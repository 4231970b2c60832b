"""docs/benchmarks.md from the figures of one `make bench` run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GOALS = {
    "peer_me": 1.0,
    "peer_signin": 1.0,
    "growth": 0.10,
}
#: `/api/auth/me` ÷ `/healthz` requests/s, per database (issue 17).
AUTH_GOALS = {"SQLite": 0.50, "PostgreSQL + Redis": 0.40}
#: The figures before issue 17, for the before-and-after tables and the p99 goal.
BASELINE = Path(__file__).with_name("baseline.json")


def baseline() -> dict[str, Any]:
    return json.loads(BASELINE.read_text()) if BASELINE.exists() else {"backends": {}}


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def goals_table(backends: dict[str, Any]) -> list[str]:
    names = list(backends)
    before = baseline()["backends"]
    rows = ["| Goal | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label: str, cell: Any) -> None:
        rows.append(f"| {label} | " + " | ".join(cell(n, backends[n]) for n in names) + " |")

    def auth(name: str, b: dict[str, Any]) -> str:
        r = b["auth"]["ours_me"]["rps"] / b["auth"]["ours_healthz"]["rps"]
        goal = AUTH_GOALS.get(name, 0.5)
        return f"{r:.2f}, at least {goal:.2f} ({_verdict(r >= goal)})"

    def p99(name: str, b: dict[str, Any]) -> str:
        now = b["auth"]["ours_me"]["p99_ms"]
        was = before.get(name, {}).get("auth", {}).get("ours_me", {}).get("p99_ms")
        if was is None:
            return f"{now:.2f} ms (no figure from before)"
        return f"{now:.2f} ms, before {was:.2f} ms ({_verdict(now <= was)})"

    def served(_name: str, b: dict[str, Any]) -> str:
        s = b.get("serve")
        if not s:
            return "not measured"
        me, hz = s["serve_me"]["rps"], s["serve_healthz"]["rps"]
        return f"{me / hz:.2f} ({_n(me)} vs {_n(hz)} requests/s; reported, no goal)"

    def peer_me(_name: str, b: dict[str, Any]) -> str:
        r = b["auth"]["ours_me"]["rps"] / b["auth"]["peer_me"]["rps"]
        return f"{r:.2f} ({_verdict(r >= GOALS['peer_me'])})"

    def peer_signin(_name: str, b: dict[str, Any]) -> str:
        r = b["signin"]["ours"]["rate"] / b["signin"]["peer"]["rate"]
        return f"{r:.2f} ({_verdict(r >= GOALS['peer_signin'])})"

    def storm(_name: str, b: dict[str, Any]) -> str:
        n = b["storm"]["refreshes"]
        return f"{n} ({_verdict(n == 1)})"

    def growth_me(_name: str, b: dict[str, Any]) -> str:
        small, large = list(b["growth"].values())
        change = large["me"]["rps"] / small["me"]["rps"] - 1
        return f"{change:+.1%} ({_verdict(abs(change) <= GOALS['growth'])})"

    def growth_signin(_name: str, b: dict[str, Any]) -> str:
        small, large = list(b["growth"].values())
        change = large["signin_p50_ms"] / small["signin_p50_ms"] - 1
        return f"{change:+.1%} ({_verdict(abs(change) <= GOALS['growth'])})"

    row("1. `/api/auth/me` ÷ `/healthz` requests/s", auth)
    row("1. `/api/auth/me` p99 under load, not worse than before", p99)
    row("1. the same ratio with `upwork-assistant serve` (access log on)", served)
    row("2. our `/api/auth/me` ÷ FastAPI-Users `/users/me`, at least 1.00", peer_me)
    row("2. our sign-ins/s ÷ FastAPI-Users + httpx-oauth sign-ins/s, at least 1.00", peer_signin)
    row("3. Upwork refreshes for 200 concurrent requests, exactly 1", storm)
    row("4. `/api/auth/me` requests/s, large vs small database, within ±10%", growth_me)
    row("4. sign-in latency (median), large vs small database, within ±10%", growth_signin)
    return rows


def _wrk_row(label: str, r: dict[str, Any]) -> str:
    """One endpoint's row of a wrk table (requests/s, spread, p50, p99, errors)."""
    return (
        f"| {label} | {_n(r['rps'])} | {r['spread']} | {r['p50_ms']:.2f} ms |"
        f" {r['p99_ms']:.2f} ms | {r['errors']} |"
    )


def _served(b: dict[str, Any]) -> list[str]:
    s = b.get("serve")
    if not s:
        return []
    lines = [
        "### 1. As a user starts it",
        "",
        "`upwork-assistant serve` as the README says (uvicorn's access log on, our",
        "structured logging, its output to a file), the same rounds and load:",
        "",
        "| Endpoint | Requests/s | Spread | p50 | p99 | Errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in (("serve_healthz", "`GET /healthz`"), ("serve_me", "`GET /api/auth/me`")):
        lines.append(_wrk_row(label, s[key]))
    ratio = s["serve_me"]["rps"] / s["serve_healthz"]["rps"]
    closing = f"Ratio `/api/auth/me` ÷ `/healthz` with the access log: **{ratio:.2f}**."
    return [*lines, "", closing, ""]


def _revocation(b: dict[str, Any]) -> list[str]:
    r = b.get("revocation")
    if not r:
        return []
    lines = [
        "### 1. How soon a revocation elsewhere reaches the session cache",
        "",
        "A session is signed in and used twice (so the server has it in memory), revoked by",
        "plain SQL as another instance would, and the server asked again and again until it",
        "refuses: from the commit to that refusal, so one request's latency included.",
        '"Answered after" counts the samples in which the first request after the commit',
        "was still accepted. Busy: wrk loads the server with another session meanwhile.",
        "",
        "| Server | Samples | p50 | p99 | Max | Answered after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in (("idle", "idle"), ("busy", "busy")):
        w = r[key]
        lines.append(
            f"| {label} | {w['samples']} | {w['p50_ms']:.2f} ms | {w['p99_ms']:.2f} ms |"
            f" {w['max_ms']:.2f} ms | {w['answered_after']} |"
        )
    return [*lines, ""]


def _before_after(name: str, b: dict[str, Any]) -> list[str]:
    was = baseline()["backends"].get(name)
    if not was:
        return []
    now_a, was_a = b["auth"], was["auth"]

    def ratio(a: dict[str, Any]) -> float:
        return float(a["ours_me"]["rps"] / a["ours_healthz"]["rps"])

    small, large = (g["me"]["rps"] for g in b["growth"].values())
    was_small, was_large = (g["me_rps"] for g in was["growth"].values())

    def both(show: Any, key: str, field: str) -> tuple[str, str]:
        return show(was_a[key][field]), show(now_a[key][field])

    def ms(value: float) -> str:
        return f"{value:.2f} ms"

    def peer(a: dict[str, Any]) -> str:
        return f"{a['ours_me']['rps'] / a['peer_me']['rps']:.2f}"

    rows = [
        ("`/healthz` requests/s", *both(_n, "ours_healthz", "rps")),
        ("`/api/auth/me` requests/s", *both(_n, "ours_me", "rps")),
        ("`/api/auth/me` ÷ `/healthz`", f"{ratio(was_a):.2f}", f"{ratio(now_a):.2f}"),
        ("`/api/auth/me` p50", *both(ms, "ours_me", "p50_ms")),
        ("`/api/auth/me` p99", *both(ms, "ours_me", "p99_ms")),
        ("our `/api/auth/me` ÷ FastAPI-Users'", peer(was_a), peer(now_a)),
        (
            "growth of `/api/auth/me` requests/s",
            f"{was_large / was_small - 1:+.1%}",
            f"{large / small - 1:+.1%}",
        ),
    ]
    return [
        "### 1. Before and after the session cache (issue 17)",
        "",
        f"Before: {was.get('source', baseline().get('source', 'the previous run'))}.",
        "",
        "| | Before | Now |",
        "|---|---:|---:|",
        *[f"| {label} | {before} | {now} |" for label, before, now in rows],
        "",
    ]


def _profiles(name: str, b: dict[str, Any]) -> list[str]:
    now = b.get("profile") or {}
    was = baseline()["backends"].get(name, {}).get("profile") or {}
    if not now.get("top"):
        return []
    lines = [
        "### Where `/api/auth/me` spends its time",
        "",
        "py-spy under the `/api/auth/me` load: the share of samples with the function on the",
        "stack (our code and the libraries on the auth path; middleware left out, as it wraps",
        f"every request). Now: {now['total']} samples"
        + (f"; before issue 17: {was['total']} samples." if was else "."),
        "",
    ]
    if not was:
        return [*lines, "| Function | Share |", "|---|---:|",
                *[f"| `{f}` | {share}% |" for f, share in now["top"]], ""]  # fmt: skip
    rows = max(len(now["top"]), len(was["top"]))
    lines += ["| Now | Share | Before | Share |", "|---|---:|---|---:|"]
    for i in range(rows):
        n = now["top"][i] if i < len(now["top"]) else ("", "")
        w = was["top"][i] if i < len(was["top"]) else ("", "")
        cell = lambda f: f"`{f}`" if f else ""  # noqa: E731
        lines.append(
            f"| {cell(n[0])} | {n[1]}{'%' if n[1] != '' else ''} |"
            f" {cell(w[0])} | {w[1]}{'%' if w[1] != '' else ''} |"
        )
    return [*lines, ""]


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
        "`upwork-assistant serve` is measured the same way, as a user starts it (access log on);",
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
            lines.append(_wrk_row(label, a[key]))
        lines += [
            "",
            f"Ratios: ours `/api/auth/me` ÷ ours `/healthz` = "
            f"**{a['ours_me']['rps'] / a['ours_healthz']['rps']:.2f}**; ours `/api/auth/me` ÷"
            f" FastAPI-Users `/users/me` = **{a['ours_me']['rps'] / a['peer_me']['rps']:.2f}**"
            f" (FastAPI-Users' own `/users/me` ÷ `/healthz` ="
            f" {a['peer_me']['rps'] / a['peer_healthz']['rps']:.2f}).",
            "",
            *_served(b),
            *_revocation(b),
            *_before_after(name, b),
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
        lines += _profiles(name, b)
    notes = Path(__file__).with_name("NOTES.md")
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    out.write_text("\n".join(lines))
