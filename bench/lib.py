"""What the benchmarks are made of: servers started as real processes pinned to a core,
wrk as the load generator on the other core, resident memory and CPU time from /proc,
and the summary statistics (median and spread of several rounds)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CORES = os.cpu_count() or 1
SERVER_CORE = "0"
CLIENT_CORE = "1" if CORES > 1 else "0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(core: str, command: Sequence[str]) -> list[str]:
    """The command on one CPU core (taskset), when the machine has more than one."""
    if CORES > 1 and shutil.which("taskset"):
        return ["taskset", "-c", core, *command]
    return list(command)


@dataclass
class Server:
    """A server process (uvicorn, one worker, no access log) pinned to the server core."""

    name: str
    module: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    core: str = SERVER_CORE
    factory: bool = False
    #: Instead of uvicorn without an access log: a whole command line (``{port}`` is
    #: replaced), e.g. `upwork-assistant serve` as the README starts it.
    command: list[str] | None = None
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path, ready_path: str = "/healthz") -> Server:
        self.log = log_dir / f"{self.name}.log"
        command = [
            PYTHON, "-m", "uvicorn", self.module, "--host", "127.0.0.1",
            "--port", str(self.port), "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        if self.factory:
            command.append("--factory")
        if self.command:
            command = [part.replace("{port}", str(self.port)) for part in self.command]
        env = {**os.environ, **self.env}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own command line
                pinned(self.core, command), env=env, stdout=out, stderr=out, cwd=ROOT
            )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.log}")
            try:
                if httpx.get(self.url + ready_path, timeout=1).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start: see {self.log}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        # taskset execs the command, so the pid is uvicorn's own.
        return self.process.pid

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(  # noqa: S603 - wrk from Debian
        pinned(CLIENT_CORE, [*command, url]), capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return WrkResult(
        rps, _ms(p50.group(1)) if p50 else 0.0, _ms(p99.group(1)) if p99 else 0.0, errors
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """Min-max around the median, as a percentage of the median."""
    if len(values) < 2:
        return "n/a"
    m = median(values)
    return f"±{(max(values) - min(values)) / 2 / m * 100:.1f}%" if m else "n/a"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def run_json(command: Sequence[str], core: str = CLIENT_CORE) -> dict[str, object]:
    """Run a helper process (e.g. the sign-in load generator) and read its JSON answer."""
    out = subprocess.run(  # noqa: S603 - our own helper
        pinned(core, command), capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return json.loads(out.strip().splitlines()[-1])
