"""Mail servers, their stage assignments and their sealed secrets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update

from mailgate.domain.ids import new_id
from mailgate.domain.model import MailServer
from mailgate.domain.servers import AuthKind, Engine, Security, ServerStatus, TlsVersion
from mailgate.errors import NotFound
from mailgate.storage.base import Tx, as_utc, unique_guard, utcnow
from mailgate.storage.secretbox import SecretBox
from mailgate.storage.signing import ca_bundles
from mailgate.storage.tables import mail_servers, stages

#: Columns a caller may set directly (everything but ids, stamps, secrets and status).
PLAIN_COLUMNS: tuple[str, ...] = (
    "name",
    "engine",
    "provider",
    "host",
    "port",
    "security",
    "min_tls_version",
    "verify_certificate",
    "ca_certificates",
    "ca_keystore",
    "auth",
    "username",
    "allow_insecure_auth",
    "oauth",
    "api_base_url",
    "sender_upn",
    "timeout_seconds",
    "max_connections",
    "rate_limit_per_minute",
    "is_default",
    "fallback_server_id",
    "options",
)


def secret_context(server_id: str) -> str:
    return f"mail_servers:{server_id}:secrets"


def _server(row: Any, stage_names: Sequence[str], secrets_set: Iterable[str]) -> MailServer:
    return MailServer(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        engine=Engine(row.engine),
        provider=row.provider,
        host=row.host,
        port=row.port,
        security=Security(row.security),
        min_tls_version=TlsVersion(row.min_tls_version),
        verify_certificate=row.verify_certificate,
        ca_certificates=row.ca_certificates,
        ca_keystore=row.ca_keystore,
        auth=AuthKind(row.auth),
        username=row.username,
        allow_insecure_auth=row.allow_insecure_auth,
        oauth=row.oauth,
        api_base_url=row.api_base_url,
        sender_upn=row.sender_upn,
        timeout_seconds=row.timeout_seconds,
        max_connections=row.max_connections,
        rate_limit_per_minute=row.rate_limit_per_minute,
        is_default=row.is_default,
        fallback_server_id=row.fallback_server_id,
        options=dict(row.options or {}),
        status=ServerStatus(row.status),
        status_detail=row.status_detail,
        secrets_set=frozenset(secrets_set),
        version=row.version,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
        stages=tuple(stage_names),
    )


class ServerRepo:
    """Mail-server rows of one tenant; secrets sealed with the instance secret box."""

    def __init__(self, tx: Tx, box: SecretBox, tenant_id: str) -> None:
        self.tx = tx
        self.box = box
        self.tenant_id = tenant_id

    async def _stage_map(self, server_ids: Sequence[str] | None = None) -> dict[str, list[str]]:
        query = select(stages.c.mail_server_id, stages.c.name).where(
            stages.c.tenant_id == self.tenant_id, stages.c.mail_server_id.is_not(None)
        )
        if server_ids is not None:
            query = query.where(stages.c.mail_server_id.in_(server_ids))
        result: dict[str, list[str]] = {}
        for server_id, name in await self.tx.execute(query.order_by(stages.c.id)):
            result.setdefault(server_id, []).append(name)
        return result

    def _secret_names(self, row: Any) -> frozenset[str]:
        return frozenset(self.box.open_fields(row.secrets, context=secret_context(row.id)))

    async def list(self) -> list[MailServer]:
        rows = (
            await self.tx.execute(
                select(mail_servers)
                .where(mail_servers.c.tenant_id == self.tenant_id)
                .order_by(mail_servers.c.id)
            )
        ).all()
        stage_map = await self._stage_map()
        return [_server(r, stage_map.get(r.id, []), self._secret_names(r)) for r in rows]

    async def find(self, server_id: str) -> MailServer | None:
        row = (
            await self.tx.execute(
                select(mail_servers).where(
                    mail_servers.c.tenant_id == self.tenant_id, mail_servers.c.id == server_id
                )
            )
        ).first()
        if row is None:
            return None
        stage_map = await self._stage_map([server_id])
        return _server(row, stage_map.get(server_id, []), self._secret_names(row))

    async def get(self, server_id: str) -> MailServer:
        server = await self.find(server_id)
        if server is None:
            raise NotFound(f"No mail server {server_id!r}.")
        return server

    async def find_by_name(self, name: str) -> str | None:
        return (
            await self.tx.execute(
                select(mail_servers.c.id).where(
                    mail_servers.c.tenant_id == self.tenant_id, mail_servers.c.name == name
                )
            )
        ).scalar_one_or_none()

    async def secrets(self, server_id: str) -> dict[str, str]:
        """The server's secret fields in clear (for engines and the probe only)."""
        sealed = (
            await self.tx.execute(
                select(mail_servers.c.secrets).where(
                    mail_servers.c.tenant_id == self.tenant_id, mail_servers.c.id == server_id
                )
            )
        ).scalar_one_or_none()
        return self.box.open_fields(sealed, context=secret_context(server_id))

    async def create(self, values: Mapping[str, Any], secrets: Mapping[str, str]) -> str:
        server_id = new_id()
        now = utcnow()
        row = {k: values[k] for k in PLAIN_COLUMNS if k in values}
        async with unique_guard("name", f"A mail server named {values['name']!r} exists."):
            await self.tx.execute(
                insert(mail_servers).values(
                    id=server_id,
                    tenant_id=self.tenant_id,
                    status=ServerStatus.UNKNOWN.value,
                    secrets=self.box.seal_fields(secrets, context=secret_context(server_id)),
                    version=1,
                    created_at=now,
                    updated_at=now,
                    **row,
                )
            )
        return server_id

    async def update(
        self, server: MailServer, values: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        row = {k: values[k] for k in PLAIN_COLUMNS if k in values}
        async with unique_guard("name", f"A mail server named {values.get('name')!r} exists."):
            await self.tx.execute(
                update(mail_servers)
                .where(mail_servers.c.id == server.id)
                .values(
                    secrets=self.box.seal_fields(secrets, context=secret_context(server.id)),
                    version=server.version + 1,
                    updated_at=utcnow(),
                    # Editing a server clears a held auth failure: the new settings get a try.
                    status=ServerStatus.UNKNOWN.value,
                    status_detail=None,
                    **row,
                )
            )

    async def set_status(self, server_id: str, status: ServerStatus, detail: str | None) -> None:
        await self.tx.execute(
            update(mail_servers)
            .where(mail_servers.c.id == server_id)
            .values(status=status.value, status_detail=detail)
        )

    async def clear_default(self, *, except_id: str | None = None) -> None:
        query = update(mail_servers).where(
            mail_servers.c.tenant_id == self.tenant_id, mail_servers.c.is_default.is_(True)
        )
        if except_id:
            query = query.where(mail_servers.c.id != except_id)
        await self.tx.execute(query.values(is_default=False))

    async def assign_stages(self, server_id: str, stage_ids: Sequence[str]) -> None:
        """Make ``stage_ids`` exactly the stages routed to ``server_id``."""
        await self.tx.execute(
            update(stages)
            .where(stages.c.tenant_id == self.tenant_id, stages.c.mail_server_id == server_id)
            .values(mail_server_id=None)
        )
        if stage_ids:
            await self.tx.execute(
                update(stages).where(stages.c.id.in_(stage_ids)).values(mail_server_id=server_id)
            )

    async def delete(self, server: MailServer) -> None:
        # Stages, accounts and fallbacks pointing here are set to NULL by the foreign keys.
        await self.tx.execute(delete(mail_servers).where(mail_servers.c.id == server.id))


async def load_for_delivery(
    tx: Tx, box: SecretBox, server_ids: Iterable[str]
) -> dict[str, tuple[MailServer, dict[str, str], str | None]]:
    """Servers (any tenant) by id with their secrets in clear, for the delivery worker, and
    the CA certificates their ``ca_keystore`` holds now (None: no keystore named, or it is
    gone: nothing extra is trusted)."""
    ids = sorted(set(server_ids))
    if not ids:
        return {}
    rows = (await tx.execute(select(mail_servers).where(mail_servers.c.id.in_(ids)))).all()
    trusted = await ca_bundles(
        tx, box, ((r.tenant_id, r.ca_keystore) for r in rows if r.ca_keystore)
    )
    out: dict[str, tuple[MailServer, dict[str, str], str | None]] = {}
    for row in rows:
        secrets = box.open_fields(row.secrets, context=secret_context(row.id))
        ca = trusted.get((row.tenant_id, row.ca_keystore)) if row.ca_keystore else None
        out[row.id] = (_server(row, (), secrets.keys()), secrets, ca)
    return out


async def set_status_many(tx: Tx, updates: Mapping[str, tuple[ServerStatus, str | None]]) -> None:
    """Record the servers' observed status (ok, auth_failed, unreachable)."""
    for server_id, (status, detail) in updates.items():
        await tx.execute(
            update(mail_servers)
            .where(mail_servers.c.id == server_id)
            .values(status=status.value, status_detail=detail)
        )
