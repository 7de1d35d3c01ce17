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
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import million
from _support import (
    LOOPBACK,
    BenchDatabase,
    BenchError,
    Deadline,
    MailgateProcess,
    Profiler,
    Sink,
    as_utc,
    free_port,
    pg_reachable,
    wait_port,
)
from delivery_client import (
    PHASES,
    TENANT,
    Api,
    Cpu,
    Options,
    batch_bodies,
    submit,
    wait_all_sent,
)
from delivery_report import report
from million import MemoryCheck
from references import References, measure

from mailgate.storage.secretbox import generate_key

PG_ENV = "MAILGATE_TEST_DATABASE_URL"
#: How long a process may take to exit after SIGTERM once its queue is empty.
STOP_GRACE = 20.0


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

    def worker_argv(self) -> list[str]:
        """``mailgate worker`` with the run's tasks and processes."""
        return [
            "worker",
            "--count",
            str(self.opts.worker_tasks),
            "--processes",
            str(self.opts.worker_processes),
        ]

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
        cpu = Cpu(serve, postgres=self.db.kind == "postgresql")
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
        worker = self.spawn("worker", self.worker_argv())
        profiler = self.profile(worker, "drain")
        self.say("drain: worker started")
        cpu = Cpu(worker, sink=self.sink, postgres=self.db.kind == "postgresql")
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
        cpu = Cpu(serve, sink=self.sink, postgres=self.db.kind == "postgresql")
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
        self._timeline(done.first_post)
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
        worker = self.spawn("worker-million", self.worker_argv())
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

    def _timeline(self, since: float, step: float = 0.5) -> None:
        """With ``-v``: messages accepted and outcomes recorded in each ``step`` seconds
        since ``since`` (to see whether delivery keeps up while mail is being accepted)."""
        if not self.opts.verbose:
            return
        accepted: dict[int, int] = {}
        finished: dict[int, int] = {}
        for created, done in self.db.query("SELECT created_at, finished_at FROM messages"):
            for value, counts in ((created, accepted), (done, finished)):
                at = as_utc(value)
                if at is not None and at.timestamp() >= since:
                    slot = int((at.timestamp() - since) / step)
                    counts[slot] = counts.get(slot, 0) + 1
        for slot in range(max([*accepted, *finished], default=-1) + 1):
            self.say(
                f"  {slot * step:5.1f} s: accepted {accepted.get(slot, 0):6,}  "
                f"sent {finished.get(slot, 0):6,}"
            )

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
