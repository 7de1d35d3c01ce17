"""Processes and databases for the delivery benchmark (``bench/delivery.py``).

Everything here is bounded in time: every wait takes a :class:`Deadline` and gives up with a
:class:`BenchError` naming what did not happen, so a stuck server never hangs the run. Only
loopback addresses are used.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
SINK_PATHS = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")


class BenchError(Exception):
    """The benchmark cannot go on; the message says what failed."""


class Deadline:
    """The overall time budget of the run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise BenchError(f"timed out after {self.seconds:.0f} s {what} (see --timeout)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, deadline: Deadline, what: str, proc: subprocess.Popen[Any]) -> None:
    """Wait until something accepts TCP connections on the loopback port."""
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1.0):
                return
        except OSError:
            deadline.check(f"waiting for {what} to listen on port {port}")
            time.sleep(0.05)


# smtp-sink ------------------------------------------------------------------------------


def find_sink(*, install: bool = True) -> str:
    """The smtp-sink binary, installed from Debian's postfix package when missing."""
    found = shutil.which("smtp-sink") or next((p for p in SINK_PATHS if Path(p).exists()), None)
    if found is None and install:
        script = ROOT / "scripts" / "install_smtp_sink.sh"
        print(f"smtp-sink not found; running {script.relative_to(ROOT)}", file=sys.stderr)
        done = subprocess.run(["bash", str(script)], check=False)
        if done.returncode != 0:
            raise BenchError(f"{script.name} failed with status {done.returncode}")
        return find_sink(install=False)
    if found is None:
        raise BenchError("smtp-sink not found: run scripts/install_smtp_sink.sh")
    return found


class Sink:
    """Postfix's smtp-sink on loopback: accepts every message, counts what it received.

    With ``-c`` it prints ``sess=N quit=N mesg=N`` (carriage-return separated) after every
    session end, QUIT and end of DATA; the last ``mesg`` is the count of received messages.
    It announces PIPELINING unless told otherwise (``-p``).
    """

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.out_path = workdir / "smtp-sink.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self, deadline: Deadline) -> None:
        command = [find_sink(), "-c"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # smtp-sink refuses to keep root privileges
        command += [f"{LOOPBACK}:{self.port}", "1000"]
        self._out = self.out_path.open("wb")
        self.proc = subprocess.Popen(command, stdout=self._out, stderr=subprocess.STDOUT)
        wait_port(self.port, deadline, "smtp-sink", self.proc)
        self._check_pipelining()

    def _check_pipelining(self) -> None:
        with socket.create_connection((LOOPBACK, self.port), timeout=5.0) as sock:
            stream = sock.makefile("rwb")
            stream.readline()
            stream.write(b"EHLO bench.example.com\r\n")
            stream.flush()
            lines = []
            while True:
                line = stream.readline()
                if not line:
                    break
                lines.append(line)
                if line[3:4] != b"-":
                    break
            stream.write(b"QUIT\r\n")
            stream.flush()
            stream.readline()
        if not any(b"PIPELINING" in line.upper() for line in lines):
            raise BenchError("smtp-sink does not announce PIPELINING")

    def received(self) -> int:
        """Messages received so far (the last ``mesg=`` counter smtp-sink printed)."""
        with self.out_path.open("rb") as out:
            out.seek(0, os.SEEK_END)
            out.seek(max(0, out.tell() - 256))
            tail = out.read()
        for record in reversed(tail.replace(b"\n", b"\r").split(b"\r")):
            for part in record.split():
                if part.startswith(b"mesg="):
                    return int(part[5:])
        return 0

    def wait_quiet(self, expected: int, seconds: float = 5.0) -> int:
        """The count once it reached ``expected`` or stopped moving for ``seconds``."""
        end = time.monotonic() + seconds
        count = self.received()
        while count < expected and time.monotonic() < end:
            time.sleep(0.1)
            count = self.received()
        return count

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._out is not None:
            self._out.close()


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of a live process (``/proc/PID/stat``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU seconds of every PostgreSQL server process on this host (its backends, WAL
    writer, checkpointer ...), for the database's share of a phase; 0.0 when none runs."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        total += process_cpu_seconds(int(entry.name)) or 0.0
    return total


def status_kb(pids: Sequence[int], field: str) -> list[int]:
    """The ``field`` line (a size in KiB, such as ``VmRSS``) of each live process in ``pids``."""
    sizes = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith(f"{field}:"):
                sizes.append(int(line.split()[1]))
    return sizes


class MachineCpu:
    """How busy every CPU of the machine was between two readings of ``/proc/stat``."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def busy(self) -> float:
        """Busy share of all CPUs since construction, 0.0 to 1.0."""
        busy, total = self._read()
        return (busy - self.start[0]) / max(1, total - self.start[1])


# Mailgate processes ---------------------------------------------------------------------


class MailgateProcess:
    """A ``mailgate`` CLI process with its output in a log file."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], workdir: Path):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        binary = Path(sys.executable).parent / "mailgate"
        command = [str(binary) if binary.exists() else "mailgate", *args]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            command, env=env, cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.started = time.time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ensure_alive(self) -> None:
        if not self.alive():
            raise BenchError(
                f"{self.name} exited with status {self.proc.returncode}:\n{self.tail()}"
            )

    def pids(self) -> list[int]:
        """The process and its live children (``mailgate worker --processes N``)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            extra = [int(p) for p in children.read_text().split()]
        except OSError:
            extra = []
        return [self.pid, *extra]

    def peak_rss_kb(self) -> int | None:
        """The largest peak resident set size (VmHWM) among the live processes, in KiB."""
        peaks = status_kb(self.pids(), "VmHWM")
        return max(peaks) if peaks else None

    def rss_kb(self) -> int:
        """The largest current resident set size (VmRSS) among the live processes, in KiB."""
        return max(status_kb(self.pids(), "VmRSS"), default=0)

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time the live process (and its children) used so far."""
        readings = [process_cpu_seconds(pid) for pid in self.pids()]
        values = [r for r in readings if r is not None]
        return sum(values) if values else None

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM (graceful: in-flight mail is finished or released), then SIGKILL."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Profiler:
    """``py-spy record`` attached to a process (raw collapsed stacks), stopped on demand."""

    def __init__(self, target: MailgateProcess, out: Path, *, rate: int = 500) -> None:
        binary = Path(sys.executable).parent / "py-spy"
        if not binary.exists() and shutil.which("py-spy") is None:
            raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.out = out
        command = [
            str(binary) if binary.exists() else "py-spy",
            "record",
            "--pid",
            str(target.pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


# Databases ------------------------------------------------------------------------------


def _psycopg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def pg_reachable(url: str) -> str | None:
    """None when the PostgreSQL server answers, else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(_psycopg_dsn(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    return None


def as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class BenchDatabase:
    """The database under test: a SQLite file in the data dir or a private PostgreSQL schema.

    :meth:`query` reads directly through the driver (no Mailgate code), for counts and
    timestamps that the API does not expose.
    """

    def __init__(self, kind: str, data_dir: Path, pg_url: str | None = None) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.schema: str | None = None
        self._pg_url = pg_url
        self.url: str | None = None
        if kind == "postgresql":
            if pg_url is None:
                raise BenchError("PostgreSQL needs a URL")
            self.schema = f"mgbench_{os.getpid()}_{secrets.token_hex(4)}"
            sep = "&" if "?" in pg_url else "?"
            self.url = f"{pg_url}{sep}options={quote(f'-csearch_path={self.schema}')}"

    def create(self) -> None:
        if self.schema is not None and self._pg_url is not None:
            import psycopg

            with psycopg.connect(_psycopg_dsn(self._pg_url), autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{self.schema}"')

    def drop(self) -> None:
        if self.schema is not None and self._pg_url is not None:
            import psycopg

            with psycopg.connect(_psycopg_dsn(self._pg_url), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def env(self) -> dict[str, str]:
        env = {"MAILGATE_DATA_DIR": str(self.data_dir)}
        if self.url is not None:
            env["MAILGATE_DATABASE_URL"] = self.url
        return env

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            path = self.data_dir / "mailgate.db"
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
                return list(conn.execute(sql).fetchall())
        import psycopg

        assert self.url is not None
        with psycopg.connect(_psycopg_dsn(self.url)) as conn:
            return list(conn.execute(sql).fetchall())  # type: ignore[arg-type]
