"""DKIM keys and keystores of a tenant, with their sealed private parts.

DKIM keys and ``pkcs12`` keystores are immutable once written (there is no update: a new
key or keystore is a new row), which is what lets the send path cache objects built from
them by row id. A ``ca`` keystore's content may be replaced (:meth:`KeystoreRepo.replace`):
nothing caches it by id; the servers and inboxes that name it read it at connect time
(:func:`ca_bundles`).

Sealing: a DKIM key's PEM private key, and a keystore's content (base64) and password, are
sealed with :meth:`SecretBox.seal_fields` under the context ``"<table>:<row id>:secrets"``,
the format that key rotation (:mod:`mailgate.storage.rotation`) relies on.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import and_, delete, insert, or_, select, update

from mailgate.domain.ids import new_id
from mailgate.errors import NotFound, SecretKeyError
from mailgate.storage.base import Tx, as_utc, unique_guard, utcnow
from mailgate.storage.secretbox import SecretBox
from mailgate.storage.tables import dkim_keys, keystores


def dkim_context(key_id: str) -> str:
    return f"dkim_keys:{key_id}:secrets"


def keystore_context(keystore_id: str) -> str:
    return f"keystores:{keystore_id}:secrets"


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A DKIM key as it may be shown: everything but the private key."""

    id: str
    tenant_id: str
    domain: str
    selector: str
    algorithm: str
    bits: int | None
    public_key: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeystoreAlias:
    """One entry (PKCS#12) or certificate (CA) of a keystore."""

    alias: str
    subject: str
    not_after: datetime | None


@dataclass(frozen=True, slots=True)
class KeystoreInfo:
    """A keystore as it may be shown: never its content or password."""

    id: str
    tenant_id: str
    name: str
    kind: str
    aliases: tuple[KeystoreAlias, ...]
    not_after: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeystoreSecret:
    """The opened secret of a keystore: its file (base64) and password."""

    content: str
    password: str | None


def _dkim(row: Any) -> DkimKey:
    return DkimKey(
        id=row.id,
        tenant_id=row.tenant_id,
        domain=row.domain,
        selector=row.selector,
        algorithm=row.algorithm,
        bits=row.bits,
        public_key=row.public_key,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
    )


def _alias(data: Any) -> KeystoreAlias:
    after = data.get("not_after")
    return KeystoreAlias(
        alias=str(data.get("alias", "")),
        subject=str(data.get("subject", "")),
        not_after=datetime.fromisoformat(after) if after else None,
    )


def _keystore(row: Any) -> KeystoreInfo:
    return KeystoreInfo(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        kind=row.kind,
        aliases=tuple(_alias(a) for a in row.aliases or ()),
        not_after=as_utc(row.not_after),
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
    )


def _stored_aliases(aliases: Iterable[KeystoreAlias]) -> list[dict[str, Any]]:
    return [
        {
            "alias": a.alias,
            "subject": a.subject,
            "not_after": a.not_after.isoformat() if a.not_after else None,
        }
        for a in aliases
    ]


class DkimKeyRepo:
    """DKIM key rows of one tenant."""

    def __init__(self, tx: Tx, box: SecretBox, tenant_id: str) -> None:
        self.tx = tx
        self.box = box
        self.tenant_id = tenant_id

    async def list(self) -> list[DkimKey]:
        rows = await self.tx.execute(
            select(dkim_keys)
            .where(dkim_keys.c.tenant_id == self.tenant_id)
            .order_by(dkim_keys.c.id)
        )
        return [_dkim(r) for r in rows]

    async def get(self, key_id: str) -> DkimKey:
        row = (
            await self.tx.execute(
                select(dkim_keys).where(
                    dkim_keys.c.tenant_id == self.tenant_id, dkim_keys.c.id == key_id
                )
            )
        ).first()
        if row is None:
            raise NotFound(f"No DKIM key {key_id!r}.")
        return _dkim(row)

    async def exists(self, domain: str, selector: str) -> bool:
        row = (
            await self.tx.execute(
                select(dkim_keys.c.id).where(
                    dkim_keys.c.tenant_id == self.tenant_id,
                    dkim_keys.c.domain == domain,
                    dkim_keys.c.selector == selector,
                )
            )
        ).first()
        return row is not None

    async def create(
        self,
        *,
        domain: str,
        selector: str,
        algorithm: str,
        bits: int | None,
        public_key: str,
        private_key_pem: str,
    ) -> str:
        key_id = new_id()
        sealed = self.box.seal_fields(
            {"private_key": private_key_pem}, context=dkim_context(key_id)
        )
        message = f"A DKIM key for selector {selector!r} of {domain!r} already exists."
        async with unique_guard("selector", message):
            await self.tx.execute(
                insert(dkim_keys).values(
                    id=key_id,
                    tenant_id=self.tenant_id,
                    domain=domain,
                    selector=selector,
                    algorithm=algorithm,
                    bits=bits,
                    public_key=public_key,
                    secrets=sealed,
                    created_at=utcnow(),
                )
            )
        return key_id

    async def with_private_keys(self) -> Sequence[tuple[DkimKey, bytes]]:
        """Every key with its *sealed* private key, newest first (open it with
        :meth:`open_private_key` only when no signer is cached for the key)."""
        rows = await self.tx.execute(
            select(dkim_keys)
            .where(dkim_keys.c.tenant_id == self.tenant_id)
            .order_by(dkim_keys.c.created_at.desc(), dkim_keys.c.id.desc())
        )
        return [(_dkim(r), bytes(r.secrets)) for r in rows]

    def open_private_key(self, key_id: str, sealed: bytes) -> str:
        """The PEM private key sealed in ``sealed`` for the key ``key_id``."""
        pem = self.box.open_fields(sealed, context=dkim_context(key_id)).get("private_key")
        if not pem:
            raise SecretKeyError(f"The DKIM key {key_id} has no private key stored.")
        return pem

    async def delete(self, key: DkimKey) -> None:
        await self.tx.execute(delete(dkim_keys).where(dkim_keys.c.id == key.id))


class KeystoreRepo:
    """Keystore rows of one tenant."""

    def __init__(self, tx: Tx, box: SecretBox, tenant_id: str) -> None:
        self.tx = tx
        self.box = box
        self.tenant_id = tenant_id

    async def list(self) -> list[KeystoreInfo]:
        rows = await self.tx.execute(
            select(keystores)
            .where(keystores.c.tenant_id == self.tenant_id)
            .order_by(keystores.c.id)
        )
        return [_keystore(r) for r in rows]

    async def find(self, keystore_id: str) -> KeystoreInfo | None:
        row = (
            await self.tx.execute(
                select(keystores).where(
                    keystores.c.tenant_id == self.tenant_id, keystores.c.id == keystore_id
                )
            )
        ).first()
        return _keystore(row) if row else None

    async def get(self, keystore_id: str) -> KeystoreInfo:
        found = await self.find(keystore_id)
        if found is None:
            raise NotFound(f"No keystore {keystore_id!r}.")
        return found

    async def find_by_name(self, name: str) -> KeystoreInfo | None:
        row = (
            await self.tx.execute(
                select(keystores).where(
                    keystores.c.tenant_id == self.tenant_id, keystores.c.name == name
                )
            )
        ).first()
        return _keystore(row) if row else None

    async def create(
        self,
        *,
        name: str,
        kind: str,
        aliases: Sequence[KeystoreAlias],
        not_after: datetime | None,
        content: str,
        password: str | None,
    ) -> str:
        keystore_id = new_id()
        sealed = self.box.seal_fields(
            {"content": content, "password": password or ""},
            context=keystore_context(keystore_id),
        )
        stored_aliases = _stored_aliases(aliases)
        message = f"A keystore named {name!r} already exists."
        async with unique_guard("name", message):
            await self.tx.execute(
                insert(keystores).values(
                    id=keystore_id,
                    tenant_id=self.tenant_id,
                    name=name,
                    kind=kind,
                    aliases=stored_aliases,
                    not_after=not_after,
                    secrets=sealed,
                    created_at=utcnow(),
                )
            )
        return keystore_id

    async def replace(
        self,
        keystore: KeystoreInfo,
        *,
        aliases: Sequence[KeystoreAlias],
        not_after: datetime | None,
        content: str,
    ) -> None:
        """New content (base64) for a ``ca`` keystore; its name and kind stay."""
        await self.tx.execute(
            update(keystores)
            .where(keystores.c.id == keystore.id)
            .values(
                aliases=_stored_aliases(aliases),
                not_after=not_after,
                secrets=self.box.seal_fields(
                    {"content": content, "password": ""}, context=keystore_context(keystore.id)
                ),
            )
        )

    async def sealed(self, keystore_ids: Iterable[str]) -> dict[str, tuple[KeystoreInfo, bytes]]:
        """The keystores of ``keystore_ids`` that exist in this tenant, with their sealed
        secret (open it with :meth:`open_secret`)."""
        wanted = sorted(set(keystore_ids))
        if not wanted:
            return {}
        rows = await self.tx.execute(
            select(keystores).where(
                keystores.c.tenant_id == self.tenant_id, keystores.c.id.in_(wanted)
            )
        )
        return {r.id: (_keystore(r), bytes(r.secrets)) for r in rows}

    def open_secret(self, keystore_id: str, sealed: bytes) -> KeystoreSecret:
        opened = self.box.open_fields(sealed, context=keystore_context(keystore_id))
        if "content" not in opened:
            raise SecretKeyError(f"The keystore {keystore_id} has no content stored.")
        return KeystoreSecret(content=opened["content"], password=opened.get("password") or None)

    async def delete(self, keystore: KeystoreInfo) -> None:
        await self.tx.execute(delete(keystores).where(keystores.c.id == keystore.id))


def ca_pem(content: bytes) -> str:
    """The certificates of a ``ca`` keystore's file (PEM, or one DER certificate) as PEM
    text, the form a TLS context's ``cadata`` takes."""
    if b"-----BEGIN" in content:
        return content.decode("ascii", errors="replace")
    return x509.load_der_x509_certificate(content).public_bytes(Encoding.PEM).decode("ascii")


async def ca_bundles(
    tx: Tx, box: SecretBox, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """The PEM certificates of the ``ca`` keystores named by ``(tenant id, name)`` pairs
    (any tenant), read now: what a connection made next trusts. A pair that names no ``ca``
    keystore, or one that cannot be opened, is left out (nothing extra is trusted)."""
    pairs = sorted(set(wanted))
    if not pairs:
        return {}
    rows = await tx.execute(
        select(keystores).where(
            keystores.c.kind == "ca",
            or_(*(and_(keystores.c.tenant_id == t, keystores.c.name == n) for t, n in pairs)),
        )
    )
    out: dict[tuple[str, str], str] = {}
    for row in rows:
        try:
            opened = box.open_fields(bytes(row.secrets), context=keystore_context(row.id))
            out[(row.tenant_id, row.name)] = ca_pem(base64.b64decode(opened["content"]))
        except (SecretKeyError, KeyError, ValueError):
            continue
    return out
