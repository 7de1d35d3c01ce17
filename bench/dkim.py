"""Accept rate of the batch API with and without signing, in one process, on SQLite.

Usage: .venv/bin/python bench/dkim.py [--batches N] [--size 500]

For each configuration (no signing, DKIM Ed25519, DKIM RSA-2048, DKIM RSA-2048 + S/MIME)
it posts N batches through the ASGI app (no network) and reports messages per second,
and the longest event-loop stall seen by a 1 ms ticker while batches are prepared: once
with the CPU-heavy part of a batch in a worker thread (``asyncio.to_thread``) and once
inline on the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from mailgate.services import routing_snapshot, send
from mailgate.services.boot import open_context
from mailgate.settings import Settings
from mailgate.storage.secretbox import generate_key
from mailgate.web.api import signing
from mailgate.web.app import create_app

ADMIN_TOKEN = "mg_bench_admin_token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
T = "/api/v1/tenants/bench"


def _p12() -> bytes:
    now = datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return pkcs12.serialize_key_and_certificates(
        b"bench", key, cert, None, serialization.NoEncryption()
    )


async def _setup(client: httpx.AsyncClient, mode: str) -> dict[str, str]:
    await client.post("/api/v1/tenants", json={"slug": "bench", "name": "Bench"}, headers=ADMIN)
    server = await client.post(
        f"{T}/mail-servers", json={"name": "c", "engine": "capture"}, headers=ADMIN
    )
    account: dict[str, Any] = {
        "address": "noreply@bench.example",
        "display_name": "Bench",
        "mail_server_id": server.json()["id"],
        "is_default": True,
    }
    if mode.endswith("+smime"):
        content = base64.b64encode(_p12()).decode()
        keystore = {"name": "k", "kind": "pkcs12", "content": content}
        store = await client.post(f"{T}/keystores", json=keystore, headers=ADMIN)
        account["smime"] = {"keystore_id": store.json()["id"]}
    r = await client.post(f"{T}/email-accounts", json=account, headers=ADMIN)
    assert r.status_code == 201, r.text
    if mode != "none":
        algorithm = "ed25519" if mode == "ed25519" else "rsa"
        body = {"domain": "bench.example", "selector": "s1", "algorithm": algorithm}
        r = await client.post(f"{T}/dkim-keys", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
    token = await client.post(f"{T}/tokens", json={"name": "s", "role": "sender"}, headers=ADMIN)
    return {"Authorization": f"Bearer {token.json()['token']}"}


async def _ticker(stalls: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        stalls.append(time.perf_counter() - start - 0.001)


async def run(mode: str, *, threaded: bool, batches: int, size: int) -> tuple[float, float]:
    routing_snapshot.clear_caches()
    send.THREAD_BATCH_MIN = 50 if threaded else 10**9
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{Path(data) / 'bench.db'}",
            data_dir=Path(data),
            secret_keys=[generate_key()],
            admin_token=ADMIN_TOKEN,
        )
        ctx = await open_context(settings, auto_upgrade=True)
        app = create_app(ctx)
        if not any(getattr(r, "path", "").endswith("/dkim-keys") for r in app.routes):
            app.include_router(signing.router)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b.test") as client:
            sender = await _setup(client, mode)
            text = "Lorem ipsum dolor sit amet. " * 60  # about 2 KB
            body = {
                "messages": [
                    {"to": [f"r{i}@example.com"], "subject": f"#{i}", "text": text}
                    for i in range(size)
                ]
            }
            await client.post(f"{T}/messages/batch", json=body, headers=sender)  # warm up
            stalls: list[float] = []
            stop = asyncio.Event()
            ticker = asyncio.create_task(_ticker(stalls, stop))
            start = time.perf_counter()
            for _ in range(batches):
                r = await client.post(f"{T}/messages/batch", json=body, headers=sender)
                assert r.status_code == 200, r.text
                assert r.json()["items"][-1]["status"] == 202, r.text
            elapsed = time.perf_counter() - start
            stop.set()
            await ticker
        await ctx.db.dispose()
    return batches * size / elapsed, max(stalls) if stalls else 0.0


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--size", type=int, default=500)
    args = parser.parse_args()
    print(f"{args.batches} batches of {args.size} messages, SQLite, ASGI in-process")
    print(f"{'signing':<16}{'thread':>8}{'msg/s':>10}{'max stall ms':>14}")
    for mode in ("none", "ed25519", "rsa", "rsa+smime"):
        for threaded in (False, True):
            rates = []
            stalls = []
            for _ in range(2):
                rate, stall = await run(
                    mode, threaded=threaded, batches=args.batches, size=args.size
                )
                rates.append(rate)
                stalls.append(stall)
            print(
                f"{mode:<16}{'yes' if threaded else 'no':>8}"
                f"{statistics.median(rates):>10.0f}{max(stalls) * 1000:>14.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
