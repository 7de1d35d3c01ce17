"""`mailgate keys rotate` while `mailgate serve` runs: no failed request, nothing lost.

A real `serve --demo` process (API, in-process delivery workers, SMTP submission) signs every
accepted message with a sealed DKIM key and seals a webhook secret; a bounded send loop runs
through a rotation started from another process. Then every message is delivered, the key
file holds only the new key, and `/readyz` stays 200.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailgate.services.boot import open_context
from mailgate.settings import Settings
from mailgate.storage import rotation
from mailgate.storage.secretbox import SecretBox, generate_key, read_key_file, write_key_file
from tests.support.serve import mailgate_env, serve


def _env(data_dir: Path) -> dict[str, str]:
    return mailgate_env(data_dir, MAILGATE_ALLOWED_NETWORKS="127.0.0.0/8")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    with serve(tmp_path, "--demo", env=_env(tmp_path / "var")) as running:
        token = next(
            line.strip() for line in running.output.splitlines() if line.strip().startswith("mg_")
        )
        yield running.url, running.data_dir, token


class _Receiver:
    """A loopback HTTP endpoint that counts the webhook deliveries it gets."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.close()


def test_rotation_under_load_fails_no_request_and_loses_no_message(
    served: tuple[str, Path, str], receiver: _Receiver
) -> None:
    url, data_dir, token = served
    auth = {"Authorization": f"Bearer {token}"}
    api = f"{url}/api/v1/tenants/demo"
    with httpx.Client(timeout=30) as client:
        r = client.post(
            f"{api}/dkim-keys",
            json={"domain": "demo.mailgate.test", "selector": "s1", "algorithm": "ed25519"},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        r = client.post(
            f"{api}/webhooks",
            # The worker opens this sealed secret to sign every `message.sent` event.
            json={"url": f"{receiver.url}/hook", "events": ["message.sent"]},
            headers=auth,
        )
        assert r.status_code == 201, r.text
    old_keys = read_key_file(data_dir / "secret.key")

    failures: list[str] = []
    accepted: list[str] = []
    stop = threading.Event()

    def send_loop() -> None:
        # Bounded: at most 2,000 requests and 90 s, whichever comes first.
        deadline = time.monotonic() + 90
        with httpx.Client(timeout=30) as client:
            for i in range(2000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                r = client.post(
                    f"{api}/messages",
                    json={"to": [f"user{i}@example.test"], "subject": f"n{i}", "text": "x"},
                    headers=auth,
                )
                if r.status_code == 202:
                    accepted.append(r.json()["id"])
                else:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                ready = client.get(f"{url}/readyz")
                if ready.status_code != 200 or ready.json().get("keys") is not True:
                    failures.append(f"readyz {ready.status_code} {ready.text[:200]}")

    sender = threading.Thread(target=send_loop)
    sender.start()
    try:
        time.sleep(1.0)
        rotated = subprocess.run(
            [sys.executable, "-m", "mailgate", "keys", "rotate"],
            env=_env(data_dir),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        time.sleep(1.5)  # requests after the old key is gone
    finally:
        stop.set()
        sender.join(timeout=60)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "re-encrypted 2 secret value(s)" in rotated.stdout + rotated.stderr
    assert failures == []
    assert len(accepted) > 20

    new_keys = read_key_file(data_dir / "secret.key")
    assert len(new_keys) == 1 and new_keys[0] not in old_keys

    # Every accepted message is delivered (capture server) and carries a DKIM signature.
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            stats = client.get(f"{api}/messages/stats", headers=auth).json()
            if stats.get("sent", 0) >= len(accepted) and not stats.get("queued"):
                break
            time.sleep(0.5)
        assert stats.get("sent", 0) == len(accepted), stats
        # ...and its signed `message.sent` webhook reached the endpoint.
        while time.monotonic() < deadline and len(receiver.received) < len(accepted):
            time.sleep(0.5)
        assert len(receiver.received) >= len(accepted)
        raw = client.get(f"{api}/messages/{accepted[-1]}/raw", headers=auth)
        assert b"DKIM-Signature:" in raw.content
        # A configuration write after the rotation is sealed with the new key and readable.
        r = client.post(
            f"{api}/dkim-keys",
            json={"domain": "demo.mailgate.test", "selector": "s2", "algorithm": "ed25519"},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        # ...and the newest key signs the next message.
        r = client.post(
            f"{api}/messages",
            json={"to": ["last@example.test"], "subject": "after", "text": "x"},
            headers=auth,
        )
        assert r.status_code == 202, r.text
        assert b"s=s2;" in client.get(f"{api}/messages/{r.json()['id']}/raw", headers=auth).content
        ready = client.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json()["keys"] is True


async def test_a_box_follows_its_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    old = generate_key()
    write_key_file(key_file, [old])
    follower = SecretBox([old], key_file=key_file)
    fixed = SecretBox([old])
    sealed_old = follower.seal(b"s3cret", context="t:1:c")

    new = generate_key()
    write_key_file(key_file, [new, old])
    sealed_new = SecretBox([new]).seal(b"other", context="t:2:c")
    # Meeting a value sealed with a key it lacks, the box reads the file again.
    assert follower.open(sealed_new, context="t:2:c") == b"other"
    # Sealing uses the newest key in the file from now on.
    assert SecretBox([new]).open(follower.seal(b"x", context="t:3:c"), context="t:3:c") == b"x"
    assert follower.open(sealed_old, context="t:1:c") == b"s3cret"
    # A box with fixed keys (MAILGATE_SECRET_KEYS) cannot, and says what to do.
    with pytest.raises(Exception, match="not configured"):
        fixed.open(sealed_new, context="t:2:c")

    key_file.write_text("not a key\n")
    key_file.chmod(0o600)
    assert follower.refresh() is False  # a broken file never takes keys away
    assert follower.open(sealed_old, context="t:1:c") == b"s3cret"


async def test_reseal_never_overwrites_a_secret_changed_meanwhile(tmp_path: Path) -> None:
    import sqlite3

    from sqlalchemy import select

    from mailgate.storage.tables import webhooks
    from mailgate.web.app import create_app

    old_key = generate_key()
    settings = Settings(data_dir=tmp_path, secret_keys=[old_key], admin_token="mg_admin_x" * 2)
    ctx = await open_context(settings, auto_upgrade=True, create_key=True)
    try:
        admin = {"Authorization": f"Bearer {'mg_admin_x' * 2}"}
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.post("/api/v1/tenants", json={"slug": "w", "name": "W"}, headers=admin)
            assert r.status_code == 201
            r = await client.post(
                "/api/v1/tenants/w/webhooks",
                json={"url": "https://93.184.216.34/hook", "events": ["message.sent"]},
                headers=admin,
            )
            assert r.status_code == 201, r.text
            webhook_id = r.json()["id"]
        context = f"webhooks:{webhook_id}:secrets"
        new_box = SecretBox([generate_key(), old_key])
        raced = new_box.seal(b'{"secret": "changed meanwhile"}', context=context)

        # Another process changes the secret after the scan, before the update.
        real_is_current = new_box.is_current

        def scan_then_race(sealed: bytes) -> bool:
            with sqlite3.connect(tmp_path / "mailgate.db") as other:
                other.execute("UPDATE webhooks SET secrets = ? WHERE id = ?", (raced, webhook_id))
            return real_is_current(sealed)

        new_box.is_current = scan_then_race  # type: ignore[method-assign]
        resealed = await rotation.reseal_all(ctx.db, new_box)
        new_box.is_current = real_is_current  # type: ignore[method-assign]

        assert resealed == 0  # the compare-and-set saw the change and left it alone
        async with ctx.db.read() as tx:
            (stored,) = (await tx.execute(select(webhooks.c.secrets))).one()
        assert bytes(stored) == raced
        assert await rotation.count_stale(ctx.db, new_box) == 0
    finally:
        await ctx.db.dispose()


async def test_readyz_is_503_with_the_reason_when_the_keys_do_not_open(
    settings: Settings,
) -> None:
    from mailgate.web.app import create_app

    ctx = await open_context(settings, auto_upgrade=True, create_key=True)
    try:
        app = create_app(ctx)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            admin = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}  # type: ignore[union-attr]
            r = await client.post("/api/v1/tenants", json={"slug": "r", "name": "R"}, headers=admin)
            assert r.status_code == 201
            r = await client.post(
                "/api/v1/tenants/r/dkim-keys",
                json={"domain": "r.example", "algorithm": "ed25519", "selector": "s"},
                headers=admin,
            )
            assert r.status_code == 201, r.text
            assert (await client.get("/readyz")).status_code == 200
            ctx.box._install([generate_key()])  # as if this process lost its keys
            r = await client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["keys"] is False and "key" in r.json()["reason"]
    finally:
        await ctx.db.dispose()
