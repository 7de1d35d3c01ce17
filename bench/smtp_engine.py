"""Throughput of the SMTP engine against Postfix's smtp-sink on loopback.

Usage: python bench/smtp_engine.py [--messages N] [--connections C] [--seconds LIMIT]

Starts smtp-sink on 127.0.0.1 on a free port (``scripts/install_smtp_sink.sh`` installs
it), delivers N pre-composed ~2 KB messages through one SmtpEngine with
``max_connections=C`` concurrent deliveries, and prints messages per second. The run stops
after N messages or LIMIT seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from mailgate.domain.delivery import Envelope, OutcomeKind
from mailgate.domain.servers import Security
from mailgate.engines.config import ServerConfig
from mailgate.engines.smtp.engine import SmtpEngine
from mailgate.net.dialer import DirectDialer

SINK_PATHS = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")


def find_sink() -> str:
    found = shutil.which("smtp-sink") or next((p for p in SINK_PATHS if Path(p).exists()), None)
    if found is None:
        sys.exit("smtp-sink not found: run scripts/install_smtp_sink.sh first")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def compose(size: int = 2048) -> bytes:
    header = (
        b"From: Bench <bench@example.com>\r\nTo: sink@example.com\r\n"
        b"Subject: throughput\r\nMessage-ID: <bench@example.com>\r\n\r\n"
    )
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = line * ((size - len(header)) // len(line) + 1)
    return (header + body)[:size].rstrip(b"\r\n") + b"\r\n"


async def wait_listening(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def run(messages: int, connections: int, seconds: float) -> int:
    port = free_port()
    sink = subprocess.Popen(
        [find_sink(), "-u", "nobody", f"127.0.0.1:{port}", "512"],
        stdout=subprocess.DEVNULL,
    )
    try:
        await wait_listening(port)
        config = ServerConfig(
            key="bench",
            host="127.0.0.1",
            port=port,
            security=Security.NONE,
            max_connections=connections,
            options={"ehlo_name": "bench.example.com"},
        )
        engine = SmtpEngine(config, dialer=DirectDialer())
        data = compose()
        envelope = Envelope("bench@example.com", ("sink@example.com",))
        counts = {kind: 0 for kind in OutcomeKind}
        remaining = messages
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                result = await engine.deliver(envelope, data)
                counts[result.kind] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
        await engine.aclose()
    finally:
        sink.terminate()
        sink.wait(timeout=5)
    done = sum(counts.values())
    print(
        f"{done} messages of {len(data)} bytes over {connections} connections "
        f"({engine.connections_opened} opened) in {elapsed:.2f} s: "
        f"{done / elapsed:,.0f} msgs/s; sent={counts[OutcomeKind.SENT]} "
        f"other={done - counts[OutcomeKind.SENT]}"
    )
    return 0 if counts[OutcomeKind.SENT] == done else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    return asyncio.run(run(args.messages, args.connections, args.seconds))


if __name__ == "__main__":
    raise SystemExit(main())
