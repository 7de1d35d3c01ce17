"""Delivery throughput of real Mailgate processes against Postfix's smtp-sink on loopback.

Usage: .venv/bin/python bench/delivery.py [--count N] [--pg-url URL] [--json FILE] ...

For each database (SQLite in a temporary data dir; PostgreSQL in a private schema when
``--pg-url`` or ``MAILGATE_TEST_DATABASE_URL`` answers) it measures, with N messages of
about 2 KB:

(a) accept: ``mailgate serve --workers 0`` takes batches of 500 through
    ``POST /api/v1/tenants/{tenant}/messages/batch`` from a few concurrent clients;
(b) drain: one ``mailgate worker`` process delivers the full queue to smtp-sink;
(c) end-to-end: ``mailgate serve`` with workers accepts and delivers at the same time;
(d) the peak RSS (VmHWM) of the worker process (and of the serve processes).

Before the databases, the reference clients of ``bench/references.py`` (smtp-source, a lean
asyncio client, Nodemailer's pooled transport, smtplib) send the same number of messages of
the same size to smtp-sink; every Mailgate figure is printed as a ratio to them, with the
targets of the issue marked met or not, so that runs on a busy or slow machine compare.

The run checks that every message ended ``sent`` and that smtp-sink received each one, and
exits non-zero with a message when anything fails or the ``--timeout`` runs out. See
``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import million
from _support import (
    LOOPBACK,
    BenchDatabase,
    BenchError,
    Deadline,
    MachineCpu,
    MailgateProcess,
    Profiler,
    Sink,
    as_utc,
    free_port,
    pg_reachable,
    process_cpu_seconds,
    wait_port,
)
from million import MemoryCheck
from references import References, measure

from mailgate.storage.secretbox import generate_key

PG_ENV = "MAILGATE_TEST_DATABASE_URL"
TENANT = "bench"
#: The targets of the issue, as same-run ratios to the reference clients (bench/references.py).
TARGETS = {
    "sqlite drain": (("nodemailer", 1.5), ("lean-asyncio", 0.5)),
    "postgresql drain": (("nodemailer", 1.2),),
    "sqlite end-to-end": (("nodemailer", 1.0),),
    "postgresql end-to-end": (("nodemailer", 1.0),),
}
TARGET_ACCEPT_MSG_S = 10_000
TARGET_US_PER_MSG = 120
TARGET_RSS_MIB = 150
POLL_SECONDS = 0.25
#: How long a process may take to exit after SIGTERM once its queue is empty.
STOP_GRACE = 20.0
PARAGRAPH = (
    "Your order has shipped and is on its way. You can follow the parcel with the tracking "
    "link in your account; delivery usually takes two to three working days. If anything "
    "is missing or damaged, reply to this message and our team will sort it out.\n\n"
)
HEADER_BYTES = 420
#: The phases a run can be limited to (--phases); drain needs accept's full queue.
PHASES = ("accept", "drain", "e2e")


@dataclass
class Options:
    count: int
    batch: int
    clients: int
    size: int
    worker_tasks: int
    worker_processes: int
    serve_workers: int | None
    max_connections: int
    profile_dir: Path | None
    verbose: bool
    phases: frozenset[str] = frozenset(PHASES)
    million_queued: int = 0
    serve_processes: int | None = None
    memory_seconds: float = 60.0


@dataclass
class Figures:
    """What one database's run measured; ``as_json`` is the ``--json`` record."""

    database: str
    count: int
    accept_msg_s: float = 0.0
    accept_seconds: float = 0.0
    message_bytes: float = 0.0
    drain_msg_s: float = 0.0
    drain_seconds: float = 0.0
    drain_wall_msg_s: float = 0.0
    drain_wall_seconds: float = 0.0
    worker_start_seconds: float = 0.0
    e2e_msg_s: float = 0.0
    e2e_seconds: float = 0.0
    e2e_accept_msg_s: float = 0.0
    worker_peak_rss_kb: int | None = None
    serve_peak_rss_kb: int | None = None
    serve_with_workers_peak_rss_kb: int | None = None
    sink_received: int = 0
    accept_cpu: dict[str, float] = field(default_factory=dict)
    drain_cpu: dict[str, float] = field(default_factory=dict)
    e2e_cpu: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    million: MemoryCheck | None = None

    def as_json(self) -> dict[str, Any]:
        record = dict(self.__dict__)
        record["million"] = None if self.million is None else self.million.as_json()
        return record


# The API --------------------------------------------------------------------------------


class Api:
    """A synchronous client for setup and polling (the load itself uses :func:`submit`)."""

    def __init__(self, base: str, admin_token: str) -> None:
        self.base = base
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.tenant_auth: dict[str, str] = {}
        self.client = httpx.Client(base_url=base, timeout=30.0)

    def close(self) -> None:
        self.client.close()

    def _post(self, path: str, body: dict[str, Any], *, expect: int = 201) -> dict[str, Any]:
        response = self.client.post(path, json=body, headers=self.admin)
        if response.status_code != expect:
            raise BenchError(f"POST {path} answered {response.status_code}: {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def set_up(self, sink_port: int, max_connections: int) -> None:
        """A tenant, an SMTP server pointing at smtp-sink, a default account and a token."""
        self._post("/api/v1/tenants", {"slug": TENANT, "name": "Bench"})
        prefix = f"/api/v1/tenants/{TENANT}"
        server = self._post(
            f"{prefix}/mail-servers",
            {
                "name": "smtp-sink",
                "engine": "smtp",
                "host": LOOPBACK,
                "port": sink_port,
                "security": "none",
                "auth": "none",
                "max_connections": max_connections,
                "stages": ["production"],
                "is_default": True,
                "options": {"ehlo_name": "bench.example.com"},
            },
        )
        self._post(
            f"{prefix}/email-accounts",
            {
                "address": "shop@example.com",
                "display_name": "Mailgate Bench",
                "mail_server_id": server["id"],
                "is_default": True,
            },
        )
        token = self._post(f"{prefix}/tokens", {"name": "bench", "role": "admin"})
        self.tenant_auth = {"Authorization": f"Bearer {token['token']}"}

    def stats(self) -> dict[str, int]:
        response = self.client.get(
            f"/api/v1/tenants/{TENANT}/messages/stats", headers=self.tenant_auth
        )
        if response.status_code != 200:
            raise BenchError(f"GET messages/stats answered {response.status_code}")
        result: dict[str, int] = response.json()
        return result


def batch_bodies(opts: Options, *, first: int) -> list[bytes]:
    """The POST bodies for ``opts.count`` messages, encoded before the clock starts."""
    text = (PARAGRAPH * (opts.size // len(PARAGRAPH) + 1))[: max(opts.size - HEADER_BYTES, 64)]
    bodies = []
    for start in range(first, first + opts.count, opts.batch):
        stop = min(start + opts.batch, first + opts.count)
        messages = [
            {
                "stage": "production",
                "to": [f"customer{i}@example.net"],
                "subject": f"Your order {i} has shipped",
                "text": text,
            }
            for i in range(start, stop)
        ]
        bodies.append(json.dumps({"messages": messages}).encode())
    return bodies


@dataclass
class Submitted:
    accepted: int
    first_post: float  # wall clock (time.time) of the first request
    seconds: float  # first request to last answer


class Cpu:
    """CPU used by a Mailgate process, the bench client, smtp-sink and the whole machine."""

    def __init__(self, target: MailgateProcess, *, sink: Sink | None = None) -> None:
        self.target = target
        self.sink = sink
        self.restart()

    def restart(self) -> None:
        self.wall = time.monotonic()
        self.machine = MachineCpu()
        self.process = self.target.cpu_seconds() or 0.0
        self.client = time.process_time()
        self.sink_cpu = self._sink_seconds()

    def _sink_seconds(self) -> float:
        if self.sink is None or self.sink.proc is None:
            return 0.0
        return process_cpu_seconds(self.sink.proc.pid) or 0.0

    def read(self, messages: int) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        process = (self.target.cpu_seconds() or 0.0) - self.process
        return {
            "seconds": round(wall, 3),
            "process_cores": round(process / wall, 3),
            "process_us_per_msg": round(process / messages * 1e6, 1),
            "client_cores": round((time.process_time() - self.client) / wall, 3),
            "sink_cores": round((self._sink_seconds() - self.sink_cpu) / wall, 3),
            "machine_busy": round(self.machine.busy(), 3),
        }


async def submit(api: Api, bodies: list[bytes], opts: Options, deadline: Deadline) -> Submitted:
    """POST every body from ``opts.clients`` concurrent clients; each item must be 202."""
    pending = iter(bodies)
    accepted = 0
    headers = api.tenant_auth | {"Content-Type": "application/json"}
    path = f"/api/v1/tenants/{TENANT}/messages/batch"
    timeout = httpx.Timeout(max(1.0, min(120.0, deadline.left())))
    async with httpx.AsyncClient(base_url=api.base, timeout=timeout) as client:

        async def one_client() -> None:
            nonlocal accepted
            for body in pending:
                deadline.check("submitting batches")
                response = await client.post(path, content=body, headers=headers)
                if response.status_code != 200:
                    raise BenchError(
                        f"POST batch answered {response.status_code}: {response.text[:500]}"
                    )
                items = response.json()["items"]
                refused = [item for item in items if item["status"] != 202]
                if refused:
                    raise BenchError(f"{len(refused)} message(s) refused, first: {refused[0]}")
                accepted += len(items)

        first_post = time.time()
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(one_client() for _ in range(opts.clients))),
            timeout=max(1.0, deadline.left()),
        )
        seconds = time.perf_counter() - started
    return Submitted(accepted=accepted, first_post=first_post, seconds=seconds)


def wait_all_sent(
    api: Api,
    expected: int,
    deadline: Deadline,
    processes: list[MailgateProcess],
    what: str,
    *,
    on_progress: Callable[[], None] | None = None,
) -> float:
    """Poll the stats until ``expected`` messages are sent and none are left; returns when.

    ``on_progress`` is called once, at the first poll that sees delivery under way.
    """
    first_sent: int | None = None
    while True:
        for proc in processes:
            proc.ensure_alive()
        counts = api.stats()
        sent = counts.get("sent", 0)
        if first_sent is None:
            first_sent = sent
        elif on_progress is not None and (sent > first_sent or counts.get("sending", 0)):
            on_progress()
            on_progress = None
        left = sum(counts.get(s, 0) for s in ("queued", "sending", "deferred"))
        if sent >= expected and left == 0:
            if counts.get("failed", 0) or counts.get("cancelled", 0):
                raise BenchError(f"{what}: not every message was sent: {counts}")
            return time.time()
        if counts.get("failed", 0):
            raise BenchError(f"{what}: messages failed: {counts}")
        if deadline.left() <= 0:
            tails = "\n".join(f"--- {p.name}\n{p.tail(15)}" for p in processes)
            raise BenchError(f"timed out {what}; stats {counts}\n{tails}")
        time.sleep(POLL_SECONDS)


# One database ---------------------------------------------------------------------------


class Run:
    """One database: processes, phases (a) to (d) and the checks between them."""

    def __init__(self, db: BenchDatabase, opts: Options, deadline: Deadline, stack: ExitStack):
        self.db = db
        self.opts = opts
        self.deadline = deadline
        self.stack = stack
        self.workdir = db.data_dir
        self.admin_token = "mg_bench_" + secrets.token_hex(16)
        self.env = os.environ.copy() | db.env()
        self.env |= {
            "MAILGATE_SECRET_KEYS": generate_key(),
            "MAILGATE_ADMIN_TOKEN": self.admin_token,
            "MAILGATE_SMTP_PORT": "0",
            "MAILGATE_ALLOWED_NETWORKS": f"{LOOPBACK}/32",
            "MAILGATE_LOG_LEVEL": "WARNING",
            "MAILGATE_CONFIG": str(self.workdir / "absent.toml"),
        }
        for name in (
            "MAILGATE_WORKERS",
            "MAILGATE_WORKER_PROCESSES",
            "MAILGATE_HOST",
            "MAILGATE_PORT",
        ):
            self.env.pop(name, None)
        self.figures = Figures(database=db.kind, count=opts.count)
        self.sink = Sink(self.workdir)

    def say(self, text: str) -> None:
        if self.opts.verbose:
            print(f"  [{self.db.kind}] {text}", file=sys.stderr, flush=True)

    def spawn(self, name: str, args: list[str]) -> MailgateProcess:
        proc = MailgateProcess(name, args, self.env, self.workdir)
        self.stack.callback(proc.stop)
        return proc

    def serve(self, name: str, workers: int | None) -> tuple[MailgateProcess, Api]:
        """``mailgate serve``; ``workers`` None starts it as a user would (its defaults)."""
        port = free_port()
        args = ["serve", "--host", LOOPBACK, "--port", str(port)]
        if workers is not None:
            args += ["--workers", str(workers)]
        proc = self.spawn(name, args)
        try:
            wait_port(port, self.deadline, f"mailgate {name}", proc.proc)
        except BenchError as exc:
            raise BenchError(f"{exc}\n{proc.tail()}") from None
        api = Api(f"http://{LOOPBACK}:{port}", self.admin_token)
        self.stack.callback(api.close)
        return proc, api

    def profile(self, target: MailgateProcess, phase: str) -> Profiler | None:
        if self.opts.profile_dir is None:
            return None
        self.opts.profile_dir.mkdir(parents=True, exist_ok=True)
        profiler = Profiler(target, self.opts.profile_dir / f"{self.db.kind}-{phase}.txt")
        self.stack.callback(profiler.stop)
        time.sleep(0.5)  # let py-spy attach before the load starts
        return profiler

    def execute(self) -> Figures:
        self.db.create()
        self.stack.callback(self.db.drop)
        self.sink.start(self.deadline)
        self.stack.callback(self.sink.stop)
        serve, api = self.serve("serve-api", workers=0)
        api.set_up(self.sink.port, self.opts.max_connections)
        phases = self.opts.phases
        if phases & {"accept", "drain"}:
            self.accept(serve, api)
        if "drain" in phases:
            self.drain(serve, api)
        self._stop(serve)
        if "e2e" in phases:
            self.end_to_end()
        if self.opts.million_queued:
            self.million_queued()
        return self.figures

    def _stop(self, proc: MailgateProcess) -> None:
        """SIGTERM; a process that does not exit cleanly in time is a problem of the run."""
        started = time.monotonic()
        status = proc.stop(grace=STOP_GRACE)
        if status != 0:
            took = time.monotonic() - started
            self.figures.problems.append(
                f"mailgate {proc.name} (pid {proc.pid}) ended with status {status} "
                f"{took:.1f} s after SIGTERM (killed after {STOP_GRACE:.0f} s if -9); "
                f"last output: {proc.tail(5)!r}"
            )

    def accept(self, serve: MailgateProcess, api: Api) -> None:
        """(a) Batches of 500 into ``serve --workers 0``; the queue ends up full."""
        f = self.figures
        bodies = batch_bodies(self.opts, first=0)
        profiler = self.profile(serve, "accept")
        self.say(f"accept: {len(bodies)} batches")
        cpu = Cpu(serve)
        done = asyncio.run(submit(api, bodies, self.opts, self.deadline))
        f.accept_cpu = cpu.read(self.opts.count)
        if profiler is not None:
            profiler.stop()
        counts = api.stats()
        if done.accepted != self.opts.count or counts.get("queued") != self.opts.count:
            raise BenchError(f"accept: {done.accepted} accepted, queue holds {counts}")
        f.accept_seconds = done.seconds
        f.accept_msg_s = done.accepted / done.seconds
        f.serve_peak_rss_kb = serve.peak_rss_kb()
        sizes = self.db.query("SELECT avg(size) FROM messages")
        f.message_bytes = float(sizes[0][0] or 0)

    def drain(self, serve: MailgateProcess, api: Api) -> None:
        """(b) One ``mailgate worker`` process empties the full queue; (d) its peak RSS."""
        f = self.figures
        before = self.sink.received()
        worker = self.spawn(
            "worker",
            [
                "worker",
                "--count",
                str(self.opts.worker_tasks),
                "--processes",
                str(self.opts.worker_processes),
            ],
        )
        profiler = self.profile(worker, "drain")
        self.say("drain: worker started")
        cpu = Cpu(worker, sink=self.sink)
        done_at = wait_all_sent(
            api,
            self.opts.count,
            self.deadline,
            [serve, worker],
            "draining the queue",
            on_progress=cpu.restart,
        )
        f.drain_cpu = cpu.read(self.opts.count)
        f.worker_peak_rss_kb = worker.peak_rss_kb()
        if profiler is not None:
            profiler.stop()
        first, last = self._span()
        f.drain_seconds = last - first
        f.drain_msg_s = self.opts.count / f.drain_seconds
        f.worker_start_seconds = first - worker.started
        f.drain_wall_seconds = done_at - worker.started
        f.drain_wall_msg_s = self.opts.count / f.drain_wall_seconds
        self._stop(worker)
        self._check_sink(before, self.opts.count, "drain")

    def end_to_end(self) -> None:
        """(c) ``serve`` with workers: submit and deliver at once, first POST to last sent."""
        f = self.figures
        before = self.sink.received()
        if self.opts.serve_processes is not None:
            self.env["MAILGATE_WORKER_PROCESSES"] = str(self.opts.serve_processes)
        serve, api = self.serve("serve-workers", workers=self.opts.serve_workers)
        api.tenant_auth = self._tenant_token(api)
        bodies = batch_bodies(self.opts, first=self.opts.count)
        profiler = self.profile(serve, "e2e")
        self.say("end-to-end: submitting")
        cpu = Cpu(serve, sink=self.sink)
        done = asyncio.run(submit(api, bodies, self.opts, self.deadline))
        f.e2e_accept_msg_s = done.accepted / done.seconds
        # Messages accepted in (a) but not drained in (b) are delivered here too.
        queued_before = self.opts.count if "accept" in self.opts.phases else 0
        if "drain" in self.opts.phases:
            queued_before = 0
        sent_before = self.opts.count if "drain" in self.opts.phases else 0
        wait_all_sent(
            api,
            sent_before + queued_before + self.opts.count,
            self.deadline,
            [serve],
            "end-to-end delivery",
        )
        f.e2e_cpu = cpu.read(self.opts.count)
        if profiler is not None:
            profiler.stop()
        _, last = self._span()
        f.e2e_seconds = last - done.first_post
        f.e2e_msg_s = self.opts.count / f.e2e_seconds
        f.serve_with_workers_peak_rss_kb = serve.peak_rss_kb()
        self._stop(serve)
        self._check_sink(before, queued_before + self.opts.count, "end-to-end")

    def million_queued(self) -> None:
        """(e) The queue filled with ``--queued`` messages through the storage layer, then
        ``mailgate worker`` drains it for ``--memory-seconds`` while its RSS is sampled."""
        check = MemoryCheck(queued=self.opts.million_queued)
        self.figures.million = check
        sent_before = int(
            self.db.query("SELECT count(*) FROM messages WHERE status = 'sent'")[0][0]
        )
        self.say(f"million-queued: filling {check.queued:,} messages")
        check.fill_seconds = million.fill(self.db, check.queued, self.deadline)
        self.say(f"million-queued: filled in {check.fill_seconds:.0f} s; worker started")
        worker = self.spawn(
            "worker-million",
            [
                "worker",
                "--count",
                str(self.opts.worker_tasks),
                "--processes",
                str(self.opts.worker_processes),
            ],
        )
        million.sample(
            self.db,
            worker,
            self.opts.memory_seconds,
            self.deadline,
            check,
            sent_before=sent_before,
            say=self.say,
        )
        self._stop(worker)

    def _tenant_token(self, api: Api) -> dict[str, str]:
        response = api.client.post(
            f"/api/v1/tenants/{TENANT}/tokens",
            json={"name": "bench-e2e", "role": "admin"},
            headers=api.admin,
        )
        if response.status_code != 201:
            raise BenchError(f"creating a token answered {response.status_code}")
        return {"Authorization": f"Bearer {response.json()['token']}"}

    def _span(self) -> tuple[float, float]:
        """First attempt start and last recorded outcome, as the worker wrote them."""
        rows = self.db.query(
            "SELECT (SELECT min(started_at) FROM attempts), (SELECT max(finished_at) FROM messages)"
        )
        first, last = (as_utc(v) for v in rows[0])
        if first is None or last is None:
            raise BenchError("no attempts recorded")
        return first.timestamp(), last.timestamp()

    def _check_sink(self, before: int, expected: int, phase: str) -> None:
        got = self.sink.wait_quiet(before + expected) - before
        self.figures.sink_received += got
        if got != expected:
            raise BenchError(f"{phase}: smtp-sink received {got} messages, expected {expected}")


def run_database(kind: str, opts: Options, deadline: Deadline, pg_url: str | None) -> Figures:
    with tempfile.TemporaryDirectory(prefix=f"mailgate-bench-{kind}-") as tmp:
        db = BenchDatabase(kind, Path(tmp), pg_url)
        with ExitStack() as stack:
            return Run(db, opts, deadline, stack).execute()


# Reporting ------------------------------------------------------------------------------


def mib(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:,.0f} MiB"


def versus(name: str, rate: float, refs: References) -> str:
    """``rate`` as ratios to the references, with the issue's targets checked."""
    parts = []
    wanted = dict(TARGETS.get(name, ()))
    for ref in ("nodemailer", "lean-asyncio", "smtp-source", "smtplib"):
        base = refs.rates.get(ref)
        if not base:
            continue
        text = f"{rate / base:.2f}x {ref}"
        if ref in wanted:
            ok = rate / base >= wanted[ref]
            text += f" [target {wanted[ref]:.1f}x: {'met' if ok else 'NOT met'}]"
        parts.append(text)
    return "; ".join(parts)


def cpu_text(cpu: dict[str, float], name: str) -> str:
    if not cpu:
        return "n/a"
    return (
        f"{name} {cpu['process_cores']:.2f} cores ({cpu['process_us_per_msg']:,.0f} us/msg), "
        f"client {cpu['client_cores']:.2f}, sink {cpu['sink_cores']:.2f}, "
        f"machine {cpu['machine_busy']:.0%} busy"
    )


def report(f: Figures, opts: Options, refs: References) -> None:
    db = f.database
    ran = opts.phases
    accept_ok = "met" if f.accept_msg_s >= TARGET_ACCEPT_MSG_S else "NOT met"
    if ran & {"accept", "drain"}:
        print(
            f"{db} accept {f.accept_msg_s:,.0f} msg/s  ({f.count:,} messages of "
            f"{f.message_bytes:,.0f} B in {f.accept_seconds:.2f} s, {opts.clients} clients, "
            f"batches of {opts.batch}) [target {TARGET_ACCEPT_MSG_S:,} msg/s: {accept_ok}]"
        )
    if "drain" in ran:
        print(
            f"{db} drain {f.drain_msg_s:,.0f} msg/s  {versus(f'{db} drain', f.drain_msg_s, refs)}"
            f"  (first attempt to last outcome {f.drain_seconds:.2f} s; "
            f"{f.drain_wall_msg_s:,.0f} msg/s from process start, "
            f"{f.worker_start_seconds:.2f} s to the first attempt; "
            f"worker --count {opts.worker_tasks} --processes {opts.worker_processes})"
        )
    serve_workers = "default" if opts.serve_workers is None else str(opts.serve_workers)
    if "e2e" in ran:
        print(
            f"{db} end-to-end {f.e2e_msg_s:,.0f} msg/s  "
            f"{versus(f'{db} end-to-end', f.e2e_msg_s, refs)}  (first POST to last sent "
            f"{f.e2e_seconds:.2f} s; accepted alongside at {f.e2e_accept_msg_s:,.0f} msg/s; "
            f"serve --workers {serve_workers}, worker processes "
            f"{'default' if opts.serve_processes is None else opts.serve_processes})"
        )
    rss_ok = (
        "met"
        if f.worker_peak_rss_kb is not None and f.worker_peak_rss_kb / 1024 < TARGET_RSS_MIB
        else "NOT met"
    )
    if "drain" in ran:
        print(
            f"{db} worker peak RSS {mib(f.worker_peak_rss_kb)} [target < {TARGET_RSS_MIB} MiB: "
            f"{rss_ok}]  (serve --workers 0: {mib(f.serve_peak_rss_kb)}, serve with workers: "
            f"{mib(f.serve_with_workers_peak_rss_kb)})"
        )
    print(f"{db} smtp-sink received {f.sink_received:,} messages")
    us = f.drain_cpu.get("process_us_per_msg")
    if us is not None:
        cpu_ok = "met" if us <= TARGET_US_PER_MSG else "NOT met"
        print(f"{db} worker cpu {us:,.0f} us/msg [target <= {TARGET_US_PER_MSG} us: {cpu_ok}]")
    print(
        f"{db} cpu  accept: {cpu_text(f.accept_cpu, 'serve')};  drain: "
        f"{cpu_text(f.drain_cpu, 'worker')};  end-to-end: {cpu_text(f.e2e_cpu, 'serve')}"
    )
    if f.million is not None:
        print(f"{db} million-queued {million.summary(f.million, TARGET_RSS_MIB)}")
    for problem in f.problems:
        print(f"{db} PROBLEM: {problem}")
    sys.stdout.flush()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per phase")
    parser.add_argument("--batch", type=int, default=500, help="messages per POST (at most 500)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent API clients")
    parser.add_argument("--size", type=int, default=2048, help="approximate message bytes")
    parser.add_argument(
        "--worker-tasks", type=int, default=1, help="mailgate worker --count (drain phase)"
    )
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="mailgate worker --processes (drain phase; default: one per core)",
    )
    parser.add_argument(
        "--serve-workers",
        type=int,
        default=None,
        help="mailgate serve --workers (end-to-end; default: serve's own defaults)",
    )
    parser.add_argument(
        "--serve-processes",
        type=int,
        default=None,
        help="MAILGATE_WORKER_PROCESSES for the end-to-end serve (default: serve's own)",
    )
    parser.add_argument("--max-connections", type=int, default=8, help="SMTP connections")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql", "both"),
        default="both",
        help="which databases to run (PostgreSQL is skipped when unreachable)",
    )
    parser.add_argument("--pg-url", default=os.environ.get(PG_ENV), help=f"default: ${PG_ENV}")
    parser.add_argument("--timeout", type=float, default=900.0, help="overall limit, seconds")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="py-spy raw stacks per phase into DIR"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the reference clients (no ratios)"
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help="comma-separated phases to run (drain includes accept): " + ", ".join(PHASES),
    )
    parser.add_argument(
        "--million-queued",
        action="store_true",
        help="after the phases, fill the queue through the storage layer and sample the "
        "worker's RSS while it drains (see --queued, --memory-seconds)",
    )
    parser.add_argument(
        "--queued", type=int, default=1_000_000, help="messages queued for --million-queued"
    )
    parser.add_argument(
        "--memory-seconds",
        type=float,
        default=60.0,
        help="how long --million-queued samples the draining worker",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    args.phases = frozenset(p.strip() for p in args.phases.split(",") if p.strip())
    if not args.phases or not args.phases <= set(PHASES):
        parser.error(f"--phases takes a comma-separated subset of {', '.join(PHASES)}")
    if not 1 <= args.batch <= 500:
        parser.error("--batch must be between 1 and 500")
    if args.count < 1 or args.clients < 1 or args.worker_tasks < 1:
        parser.error("--count, --clients and --worker-tasks must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = Options(
        count=args.count,
        batch=args.batch,
        clients=args.clients,
        size=args.size,
        worker_tasks=args.worker_tasks,
        worker_processes=max(1, args.worker_processes),
        serve_workers=args.serve_workers,
        max_connections=args.max_connections,
        profile_dir=args.profile,
        verbose=args.verbose,
        phases=args.phases,
        million_queued=args.queued if args.million_queued else 0,
        serve_processes=args.serve_processes,
        memory_seconds=args.memory_seconds,
    )
    deadline = Deadline(args.timeout)
    results: dict[str, Any] = {}
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    failed = False
    refs = References()
    if not args.no_reference:
        try:
            refs = measure(opts.count, opts.size, deadline)
        except BenchError as exc:
            print(f"references FAILED: {exc}", file=sys.stderr)
            failed = True
        for name, rate in refs.rates.items():
            print(f"reference {name} {rate:,.0f} msg/s  ({opts.count:,} messages to smtp-sink)")
        for name, why in refs.missing.items():
            print(f"reference {name} missing: {why}")
        results["references_msg_s"] = refs.rates
    for kind in kinds:
        pg_url = args.pg_url if kind == "postgresql" else None
        if kind == "postgresql":
            why = "no URL (--pg-url or $" + PG_ENV + ")" if not pg_url else pg_reachable(pg_url)
            if why is not None:
                print(f"postgresql skipped: {why}")
                results[kind] = {"skipped": why}
                continue
        try:
            figures = run_database(kind, opts, deadline, pg_url)
        except BenchError as exc:
            print(f"{kind} FAILED: {exc}", file=sys.stderr)
            results[kind] = {"failed": str(exc)}
            failed = True
            continue
        report(figures, opts, refs)
        results[kind] = figures.as_json()
        failed = failed or bool(figures.problems)
    if args.json is not None:
        record = {
            "count": opts.count,
            "batch": opts.batch,
            "clients": opts.clients,
            "worker_tasks": opts.worker_tasks,
            "worker_processes": opts.worker_processes,
            "serve_workers": opts.serve_workers,
            "serve_processes": opts.serve_processes,
            "max_connections": opts.max_connections,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "profiled": opts.profile_dir is not None,
            "results": results,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
