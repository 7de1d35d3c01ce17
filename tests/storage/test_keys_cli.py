"""`mailgate keys rotate` and startup key checks, through the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from mailgate.services.boot import open_context
from mailgate.settings import Settings
from mailgate.storage.db import Database
from mailgate.storage.secretbox import SecretBox, generate_key, load_keys
from mailgate.storage.tables import SECRET_COLUMNS
from tests.config.helpers import bearer


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")} | env
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


async def _sealed_values(url: str) -> dict[str, bytes]:
    from sqlalchemy import select

    db = Database(url)
    out: dict[str, bytes] = {}
    try:
        async with db.read() as tx:
            for table, column in SECRET_COLUMNS:
                rows = await tx.execute(select(table.c.id, table.c[column]))
                for row_id, sealed in rows:
                    if sealed is not None:
                        out[f"{table.name}:{row_id}:{column}"] = bytes(sealed)
    finally:
        await db.dispose()
    return out


async def _populate(settings: Settings) -> None:
    from mailgate.web.app import create_app

    ctx = await open_context(settings, auto_upgrade=True, create_key=True)
    try:
        admin = bearer(settings.admin_token.get_secret_value())  # type: ignore[union-attr]
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            await c.post("/api/v1/tenants", json={"slug": "k", "name": "K"}, headers=admin)
            for i in range(3):
                r = await c.post(
                    "/api/v1/tenants/k/mail-servers",
                    json={
                        "name": f"s{i}",
                        "host": "smtp.example.com",
                        "auth": "password",
                        "username": "u",
                        "password": f"pw-{i}-rotating",
                    },
                    headers=admin,
                )
                assert r.status_code == 201, r.text
            r = await c.post(
                "/api/v1/tenants/k/email-accounts",
                json={
                    "address": "a@k.example",
                    "display_name": "A",
                    "mail_server_id": r.json()["id"],
                    "imap": {"host": "imap.k.example", "password": "imap-rotating"},
                },
                headers=admin,
            )
            assert r.status_code == 201, r.text
    finally:
        await ctx.db.dispose()


async def test_rotate_with_key_file(database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, data_dir=tmp_path, admin_token="adm-token-1")
    await _populate(settings)
    key_file = tmp_path / "secret.key"
    old_keys = load_keys(env_keys=(), key_file=key_file, create=False)
    before = await _sealed_values(database_url)
    assert len(before) == 4

    env = {"MAILGATE_DATABASE_URL": database_url, "MAILGATE_DATA_DIR": str(tmp_path)}
    result = _cli(["keys", "rotate"], env)
    assert result.returncode == 0, result.stderr
    assert "re-encrypted 4 secret value(s)" in result.stderr

    new_keys = load_keys(env_keys=(), key_file=key_file, create=False)
    assert len(new_keys) == 1 and new_keys != old_keys
    assert key_file.stat().st_mode & 0o777 == 0o600
    after = await _sealed_values(database_url)
    assert after.keys() == before.keys()
    for context, sealed in after.items():
        assert sealed != before[context]  # old ciphertexts are gone
        assert sealed not in b"".join(before.values())
    new_box = SecretBox(new_keys)
    plain = {c: new_box.open(s, context=c) for c, s in after.items()}
    assert sorted(plain.values())[0].startswith(b'{"imap_password": "imap-rotating"')
    assert all(b"rotating" in v for v in plain.values())
    # The old key alone no longer opens anything.
    old_box = SecretBox(old_keys)
    assert not any(old_box.is_current(s) for s in after.values())


async def test_rotate_with_environment_keys(database_url: str, tmp_path: Path) -> None:
    old = generate_key()
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, admin_token="adm", secret_keys=[old]
    )
    await _populate(settings)
    new = generate_key()
    env = {"MAILGATE_DATABASE_URL": database_url, "MAILGATE_SECRET_KEYS": f"{new},{old}"}
    result = _cli(["keys", "rotate"], env)
    assert result.returncode == 0, result.stderr
    assert "remove the old keys" in result.stderr
    box = SecretBox([new])
    for context, sealed in (await _sealed_values(database_url)).items():
        assert box.open(sealed, context=context)


async def test_wrong_or_missing_key_is_a_clear_startup_error(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_url, data_dir=tmp_path, admin_token="adm")
    await _populate(settings)
    base = {"MAILGATE_DATABASE_URL": database_url, "MAILGATE_DATA_DIR": str(tmp_path)}

    wrong = _cli(["admin", "create-token"], base | {"MAILGATE_SECRET_KEYS": generate_key()})
    assert wrong.returncode == 2
    assert "sealed with a key that is not configured" in wrong.stderr
    assert "Traceback" not in wrong.stderr

    (tmp_path / "secret.key").unlink()
    missing = _cli(["admin", "create-token"], base)
    assert missing.returncode == 2
    assert "key file" in missing.stderr and "missing" in missing.stderr
    assert not (tmp_path / "secret.key").exists()
