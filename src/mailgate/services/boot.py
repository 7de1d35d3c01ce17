"""Turning instance settings into a ready :class:`Context` (used by every edge)."""

from __future__ import annotations

from mailgate.errors import ConfigurationError
from mailgate.services.context import Context, InstancePolicy
from mailgate.settings import Settings
from mailgate.storage import migrate, rotation
from mailgate.storage.db import Database
from mailgate.storage.secretbox import SecretBox, load_keys


def secret_box(settings: Settings, *, create: bool) -> SecretBox:
    keys = load_keys(
        env_keys=[k.get_secret_value() for k in settings.secret_keys],
        key_file=settings.key_file,
        create=create,
    )
    # Keys from the environment are fixed for the life of the process; a key file is
    # followed while it runs, so `mailgate keys rotate` needs no restart.
    return SecretBox(keys, key_file=None if settings.secret_keys else settings.key_file)


async def open_context(
    settings: Settings, *, auto_upgrade: bool = False, create_key: bool = False
) -> Context:
    """Open the database, check its schema and load the keys.

    ``auto_upgrade`` migrates a SQLite database by itself (``mailgate serve``); PostgreSQL is
    upgraded with ``mailgate db upgrade`` so that many hosts never race on migrations.
    """
    db = Database(settings.effective_database_url)
    try:
        current = await migrate.current_revision(db)
        head = migrate.head_revision()
        if current != head:
            if auto_upgrade and (db.dialect == "sqlite" or current is None):
                await migrate.upgrade(db)
            else:
                raise ConfigurationError(
                    f"The database at {db.safe_url} is at schema {current or 'none'} but this "
                    f"Mailgate needs {head}; run `mailgate db upgrade`."
                )
        # Never invent a new key for a database that already holds secrets.
        if (
            not settings.secret_keys
            and not settings.key_file.exists()
            and await rotation.count_secrets(db)
        ):
            raise ConfigurationError(
                f"The key file {settings.key_file} is missing but the database holds "
                "encrypted secrets; restore the key file or set MAILGATE_SECRET_KEYS. "
                "A new key could not decrypt them."
            )
        box = secret_box(settings, create=create_key)
        await rotation.verify_keys(db, box)
    except BaseException:
        await db.dispose()
        raise
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None
    return Context(db=db, box=box, policy=InstancePolicy.from_settings(settings), admin_token=admin)
