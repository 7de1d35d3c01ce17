"""Files holding mail and secrets are private: 0700 data dir, 0600 database, WAL, keys, tokens."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mailgate.errors import Unauthenticated
from mailgate.services import auth
from mailgate.services.boot import open_context
from mailgate.services.demo import DEMO_TOKEN_FILE, ensure_demo
from mailgate.settings import Settings
from mailgate.storage import members


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Settings:
    # A data dir that does not exist yet, as on a first `mailgate serve`.
    return Settings(data_dir=tmp_path / "var" / "mailgate", admin_token=None)


async def test_first_start_creates_private_data_dir_database_wal_and_key(
    fresh_settings: Settings,
) -> None:
    ctx = await open_context(fresh_settings, auto_upgrade=True, create_key=True)
    try:
        await ensure_demo(ctx)  # writes: the WAL and shared-memory files exist now
        data_dir = fresh_settings.data_dir
        assert _mode(data_dir) == 0o700
        db_file = data_dir / "mailgate.db"
        files = [db_file, data_dir / "secret.key"]
        files += [p for p in (Path(f"{db_file}-wal"), Path(f"{db_file}-shm")) if p.exists()]
        assert Path(f"{db_file}-wal").exists()
        for path in files:
            assert _mode(path) == 0o600, path
        assert not _mode(Path(f"{db_file}.writer-lock")) & 0o077
    finally:
        await ctx.db.dispose()


async def test_existing_data_dir_is_kept_and_database_still_private(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    settings = Settings(data_dir=shared, admin_token=None)
    ctx = await open_context(settings, auto_upgrade=True, create_key=True)
    try:
        assert _mode(shared) == 0o755  # an operator's layout is not changed
        assert _mode(shared / "mailgate.db") == 0o600
    finally:
        await ctx.db.dispose()


async def test_demo_tokens_survive_a_restart(fresh_settings: Settings) -> None:
    token_file = fresh_settings.data_dir / DEMO_TOKEN_FILE
    ctx = await open_context(fresh_settings, auto_upgrade=True, create_key=True)
    try:
        first = await ensure_demo(ctx, token_file=token_file)
        assert _mode(token_file) == 0o600
    finally:
        await ctx.db.dispose()
    ctx = await open_context(fresh_settings, auto_upgrade=True, create_key=True)
    try:
        again = await ensure_demo(ctx, token_file=token_file)
        assert (again.token, again.admin_token) == (first.token, first.admin_token)
        # Both still open the API after the restart.
        assert (await auth.authenticate(ctx, first.token)).tenant_id is not None
        assert (await auth.authenticate(ctx, first.admin_token)).is_instance_admin
    finally:
        await ctx.db.dispose()


async def test_a_revoked_demo_token_is_replaced_and_the_file_updated(
    fresh_settings: Settings,
) -> None:
    token_file = fresh_settings.data_dir / DEMO_TOKEN_FILE
    ctx = await open_context(fresh_settings, auto_upgrade=True, create_key=True)
    try:
        first = await ensure_demo(ctx, token_file=token_file)
        async with ctx.db.transaction() as tx:
            record = await members.find_token(tx, first.token)
            assert record is not None and record.tenant_id is not None
            await members.delete_token(tx, record.tenant_id, record.id)
        second = await ensure_demo(ctx, token_file=token_file)
        assert second.token != first.token
        assert second.token in token_file.read_text()
        assert (await auth.authenticate(ctx, second.token)).tenant_id is not None
        with pytest.raises(Unauthenticated):
            await auth.authenticate(ctx, first.admin_token)  # replaced with the owner token
    finally:
        await ctx.db.dispose()


async def test_without_a_token_file_every_start_issues_new_tokens(
    fresh_settings: Settings,
) -> None:
    ctx = await open_context(fresh_settings, auto_upgrade=True, create_key=True)
    try:
        first = await ensure_demo(ctx)
        second = await ensure_demo(ctx)
        assert second.token != first.token
        with pytest.raises(Unauthenticated):
            await auth.authenticate(ctx, first.token)
    finally:
        await ctx.db.dispose()
