"""Truststores: ``ca`` keystores that mail servers and inboxes trust by name.

A server's ``ca_keystore`` (and an inbox's ``imap.ca_keystore``) names a keystore of kind
``ca`` of the same tenant, instead of inline PEM ``ca_certificates``: one private CA
uploaded once serves every server and inbox that names it. Rules applied here:

* The name must be of a ``ca`` keystore of the tenant, and inline certificates may not be
  given as well (422 naming the field).
* The keystore is read when a connection is made (delivery, Test Connection, inbox sync and
  inbox test), so a new content of the keystore reaches every user of it.
* A ``ca`` keystore that a server or inbox names cannot be deleted (409 listing them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailgate.domain.server_schema import CA_BOTH
from mailgate.errors import ValidationFailed
from mailgate.services.context import Context
from mailgate.storage.base import Tx
from mailgate.storage.secretbox import SecretBox
from mailgate.storage.signing import KeystoreRepo, ca_bundles


async def check_reference(
    tx: Tx, box: SecretBox, tenant_id: str, values: Mapping[str, Any], *, prefix: str = ""
) -> None:
    """422 naming ``<prefix>ca_keystore`` when ``values`` name a keystore that is not a
    ``ca`` keystore of the tenant, or give inline ``ca_certificates`` as well."""
    name = values.get("ca_keystore")
    if not name:
        return
    field = f"{prefix}ca_keystore"
    if values.get("ca_certificates"):
        raise ValidationFailed.field(field, CA_BOTH.replace("ca_", f"{prefix}ca_"))
    keystore = await KeystoreRepo(tx, box, tenant_id).find_by_name(str(name))
    if keystore is None:
        raise ValidationFailed.field(
            field, f"no keystore named {name!r}; upload its CA certificates as a ca keystore"
        )
    if keystore.kind != "ca":
        raise ValidationFailed.field(
            field,
            f"the keystore {name!r} is a {keystore.kind} keystore (a signing identity); "
            "name a keystore of kind ca",
        )


async def trusted(ctx: Context, tenant_id: str, name: str | None) -> str | None:
    """The PEM certificates the ``ca`` keystore ``name`` holds now (None without a name, or
    when it is gone: then nothing extra is trusted)."""
    if not name:
        return None
    async with ctx.db.read() as tx:
        found = await ca_bundles(tx, ctx.box, [(tenant_id, name)])
    return found.get((tenant_id, name))


@dataclass(frozen=True, slots=True)
class KeystoreUsers:
    """The servers (by name) and inboxes (by account address) naming one keystore."""

    servers: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.servers or self.accounts)

    def describe(self, keystore: str) -> str:
        parts = []
        if self.servers:
            plural = "s" if len(self.servers) > 1 else ""
            parts.append(f"mail server{plural} {', '.join(self.servers)}")
        if self.accounts:
            plural = "es" if len(self.accounts) > 1 else ""
            parts.append(f"the inbox{plural} of {', '.join(self.accounts)}")
        return (
            f"The keystore {keystore!r} holds the CA certificates trusted by "
            f"{' and '.join(parts)}; change their ca_keystore first."
        )
