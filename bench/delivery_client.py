"""The load side of ``bench/delivery.py``: options, the API client, request bodies, the
concurrent batch submitter, CPU readings and the wait for delivery."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _support import (
    LOOPBACK,
    BenchError,
    Deadline,
    MachineCpu,
    MailgateProcess,
    Sink,
    postgres_cpu_seconds,
    process_cpu_seconds,
)

TENANT = "bench"
POLL_SECONDS = 0.25
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

    def __init__(
        self, target: MailgateProcess, *, sink: Sink | None = None, postgres: bool = False
    ) -> None:
        self.target = target
        self.sink = sink
        #: Whether the database is PostgreSQL on this host, whose server CPU is then counted.
        self.postgres = postgres
        self.restart()

    def restart(self) -> None:
        self.wall = time.monotonic()
        self.machine = MachineCpu()
        self.process = self.target.cpu_seconds() or 0.0
        self.client = time.process_time()
        self.sink_cpu = self._sink_seconds()
        self.database = postgres_cpu_seconds() if self.postgres else 0.0

    def _sink_seconds(self) -> float:
        if self.sink is None or self.sink.proc is None:
            return 0.0
        return process_cpu_seconds(self.sink.proc.pid) or 0.0

    def read(self, messages: int) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        process = (self.target.cpu_seconds() or 0.0) - self.process
        database = postgres_cpu_seconds() - self.database if self.postgres else 0.0
        return {
            "seconds": round(wall, 3),
            "process_cores": round(process / wall, 3),
            "process_us_per_msg": round(process / messages * 1e6, 1),
            "client_cores": round((time.process_time() - self.client) / wall, 3),
            "sink_cores": round((self._sink_seconds() - self.sink_cpu) / wall, 3),
            "database_cores": round(database / wall, 3),
            "database_us_per_msg": round(database / messages * 1e6, 1),
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
