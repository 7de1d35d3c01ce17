"""The reference clients ``bench/delivery.py`` compares Mailgate with, in the same run.

Each sends pre-built messages of the same size to one smtp-sink on loopback and reports
messages per second:

- ``smtp-source -d -s 16`` (Postfix's C load generator, reusing its connections; about the
  ceiling of the sink);
- the lean asyncio client of ``bench/lean_smtp.py`` (PIPELINING, 16 connections);
- Nodemailer's pooled transport (``bench/node/pool.js``; 16 connections), installed from the
  npm registry by ``scripts/install_nodemailer.sh`` when missing;
- ``smtplib`` over one reused connection (best of three rounds).

A reference that cannot run (no node, no smtp-source) is reported as missing, not fatal:
the Mailgate figures are still printed, without that ratio.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _support import LOOPBACK, ROOT, SINK_PATHS, BenchError, Deadline, Sink

CONNECTIONS = 16
SMTPLIB_ROUNDS = 3
#: smtplib is slow: it sends at most this many messages in all (in SMTPLIB_ROUNDS rounds).
SMTPLIB_COUNT = 6_000
NODE_DIR = ROOT / "bench" / "node"
PARAGRAPH = (
    "Your order has shipped and is on its way. You can follow the parcel with the tracking "
    "link in your account; delivery usually takes two to three working days.\r\n"
)


@dataclass
class References:
    """Messages/s of each reference client; a missing one has a reason in ``missing``."""

    rates: dict[str, float] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def _body(size: int, subject: str) -> bytes:
    text = (PARAGRAPH * (size // len(PARAGRAPH) + 1))[: max(size - 200, 64)]
    return (
        "From: Bench <bench@example.com>\r\nTo: someone@example.com\r\n"
        f"Subject: {subject}\r\nMessage-ID: <reference@example.com>\r\n\r\n{text}"
    ).encode()


def _counted(sink: Sink, before: int, sent: int, name: str) -> None:
    got = sink.wait_quiet(before + sent) - before
    if got != sent:
        raise BenchError(f"{name}: smtp-sink received {got} of {sent} messages")


def _smtp_source(sink: Sink, count: int, size: int, deadline: Deadline) -> float:
    found = shutil.which("smtp-source") or next(
        (p.replace("smtp-sink", "smtp-source") for p in SINK_PATHS if Path(p).exists()), None
    )
    if found is None or not Path(found).exists():
        raise FileNotFoundError("smtp-source not found (scripts/install_smtp_sink.sh)")
    before = sink.received()
    started = time.perf_counter()
    subprocess.run(
        [found, "-d", "-s", str(CONNECTIONS), "-m", str(count), "-l", str(size),
         "-f", "bench@example.com", "-t", "someone@example.com", f"{LOOPBACK}:{sink.port}"],
        check=True, timeout=max(1.0, min(deadline.left(), 300.0)), capture_output=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    _counted(sink, before, count, "smtp-source")
    return count / seconds


def _child_json(command: list[str], deadline: Deadline) -> dict[str, float]:
    done = subprocess.run(
        command,
        check=True,
        timeout=max(1.0, min(deadline.left(), 300.0)),
        capture_output=True,
        text=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _lean(sink: Sink, count: int, size: int, deadline: Deadline) -> float:
    before = sink.received()
    script = str(ROOT / "bench" / "lean_smtp.py")
    args = [str(sink.port), str(count), str(CONNECTIONS), str(size)]
    found = _child_json([sys.executable, script, *args], deadline)
    _counted(sink, before, int(found["sent"]), "lean asyncio client")
    return found["sent"] / found["seconds"]


def _nodemailer(sink: Sink, count: int, size: int, deadline: Deadline) -> float:
    node = shutil.which("node")
    if node is None:
        raise FileNotFoundError("node is not installed")
    if not (NODE_DIR / "node_modules" / "nodemailer").exists():
        print("nodemailer not found; running scripts/install_nodemailer.sh", file=sys.stderr)
        subprocess.run([str(ROOT / "scripts" / "install_nodemailer.sh")], check=True, timeout=300)
    before = sink.received()
    args = [str(sink.port), str(count), str(CONNECTIONS), str(size)]
    found = _child_json([node, str(NODE_DIR / "pool.js"), *args], deadline)
    _counted(sink, before, int(found["sent"]), "nodemailer")
    return found["sent"] / found["seconds"]


def _smtplib(sink: Sink, count: int, size: int, deadline: Deadline) -> float:
    body = _body(size, "smtplib reference")
    per_round = max(1, min(count, SMTPLIB_COUNT) // SMTPLIB_ROUNDS)
    before = sink.received()
    best = 0.0
    for _ in range(SMTPLIB_ROUNDS):
        with smtplib.SMTP(LOOPBACK, sink.port, timeout=10) as client:
            client.ehlo("bench.example.com")
            started = time.perf_counter()
            for index in range(per_round):
                client.sendmail("bench@example.com", ["someone@example.com"], body)
                if index % 500 == 0:
                    deadline.check("in the smtplib reference")
            best = max(best, per_round / (time.perf_counter() - started))
    _counted(sink, before, per_round * SMTPLIB_ROUNDS, "smtplib")
    return best


#: Name shown in the output -> how to measure it.
CLIENTS = {
    "smtp-source": _smtp_source,
    "lean-asyncio": _lean,
    "nodemailer": _nodemailer,
    "smtplib": _smtplib,
}


def measure(count: int, size: int, deadline: Deadline) -> References:
    """Run every reference client against one smtp-sink, one after the other."""
    refs = References()
    with tempfile.TemporaryDirectory(prefix="mailgate-bench-refs-") as tmp:
        sink = Sink(Path(tmp))
        try:
            sink.start(deadline)
            for name, client in CLIENTS.items():
                deadline.check(f"before the {name} reference")
                try:
                    refs.rates[name] = client(sink, count, size, deadline)
                except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
                    refs.missing[name] = f"{type(exc).__name__}: {exc}"
                except smtplib.SMTPException as exc:
                    refs.missing[name] = f"{type(exc).__name__}: {exc}"
        finally:
            sink.stop()
    return refs
