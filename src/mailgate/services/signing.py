"""DKIM keys and keystores: the administration of signing material (SPEC.md section 3).

Rules applied here:

* DKIM keys are generated here, never uploaded: RSA 2048 (default) to 4096 bits, or
  Ed25519 (RFC 8463); 1024-bit RSA is refused (RFC 8301 section 3.2). One key per
  (domain, selector) in a tenant (409). The private key is sealed at once and never leaves
  the secret box except to sign; responses carry the DNS TXT record to publish.
* Keystores are a PKCS#12 file (``pkcs12``: signing identities by alias) or PEM CA
  certificates (``ca``). The file is parsed at upload, so a wrong password (422 naming
  ``password``) or a damaged file (422 naming ``content``) is refused before it is stored;
  the content and password are sealed together. A keystore an account signs with cannot be
  deleted (409 naming the account).
* A ``ca`` keystore is a truststore that mail servers and inboxes name
  (:mod:`mailgate.services.trust`): its content may be replaced (every server and inbox
  naming it trusts the new certificates from their next connection), and it cannot be
  deleted while one names it (409 listing them). A ``pkcs12`` keystore is never replaced.
* Audit records name the fields that were given, never their values.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography import x509
from cryptography.x509.oid import NameOID

from mailgate.compose.dkim import DkimKeyMaterial, DkimSigner, generate_key
from mailgate.compose.signing_errors import SigningError
from mailgate.compose.smime import KeystoreEntry, load_pkcs12, smime_sign
from mailgate.domain.model import EmailAccount, MailServer
from mailgate.domain.servers import RECOMPOSING_ENGINES
from mailgate.errors import Conflict, DependantsConflict, FieldError, ValidationFailed
from mailgate.services import audit_trail, trust
from mailgate.services.context import Caller, Context
from mailgate.storage.accounts import AccountRepo
from mailgate.storage.servers import ServerRepo
from mailgate.storage.signing import DkimKey, DkimKeyRepo, KeystoreAlias, KeystoreInfo, KeystoreRepo

__all__ = [
    "DkimKey",
    "KeystoreAlias",
    "KeystoreInfo",
    "SmimeIdentity",
    "create_dkim_key",
    "create_keystore",
    "delete_dkim_key",
    "delete_keystore",
    "dns_record",
    "get_dkim_key",
    "get_keystore",
    "list_dkim_keys",
    "list_keystores",
    "normalise_domain",
    "replace_keystore",
    "sign_message",
]

DEFAULT_RSA_BITS: Final = 2048
MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 4096
KEYSTORE_KINDS: Final = ("pkcs12", "ca")
_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN: Final = re.compile(rf"(?:{_LABEL}\.)+[a-z0-9-]{{2,63}}")
_SELECTOR: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SmimeIdentity:
    """The signing identity of one account, or why it cannot sign (``entry`` is None)."""

    entry: KeystoreEntry | None
    problem: str | None = None


def sign_message(
    raw: bytes,
    *,
    account: EmailAccount,
    engine: str | None,
    smime: SmimeIdentity | None,
    dkim: DkimSigner | str | None,
    now: datetime,
) -> bytes:
    """``raw`` S/MIME-signed when ``account`` has an identity, then DKIM-signed when
    ``dkim`` is a signer (a string says why the domain's key cannot sign; None: no key).

    Raises a 422 naming ``from`` rather than return mail that should be signed and is not:
    an expired or unusable certificate, a keystore that cannot be opened, S/MIME through an
    engine that rebuilds messages (``engine``), or a DKIM key that cannot sign.
    """
    if account.smime is not None:
        if engine in RECOMPOSING_ENGINES:
            raise ValidationFailed.field(
                "from",
                f"{account.address} signs its mail with S/MIME, which the {engine} engine "
                "cannot carry (the provider rebuilds the message); route this account's mail "
                "through an SMTP server",
            )
        if smime is None or smime.entry is None:
            reason = smime.problem if smime else "its keystore is not loaded"
            raise ValidationFailed.field(
                "from", f"{account.address} cannot sign with S/MIME: {reason}"
            )
        entry = smime.entry
        try:
            raw = smime_sign(
                raw, key=entry.key, certificate=entry.certificate, chain=entry.chain, now=now
            )
        except SigningError as exc:
            raise ValidationFailed.field(
                "from", f"{account.address} cannot sign with S/MIME: {exc}"
            ) from exc
    if isinstance(dkim, str):
        raise ValidationFailed.field("from", f"{account.address} cannot be DKIM-signed: {dkim}")
    if dkim is not None:
        try:
            raw = dkim.sign(raw)
        except SigningError as exc:
            raise ValidationFailed.field(
                "from", f"{account.address} cannot be DKIM-signed: {exc}"
            ) from exc
    return raw


def normalise_domain(value: str, *, field: str = "domain") -> str:
    """``value`` as a lower-case A-label domain without a trailing dot, or a 422."""
    domain = value.strip().rstrip(".").lower()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValidationFailed.field(field, "is not a valid domain") from None
    if len(domain) > 253 or _DOMAIN.fullmatch(domain) is None:
        raise ValidationFailed.field(field, "is not a valid domain")
    return domain


def dns_record(key: DkimKey) -> tuple[str, str]:
    """The TXT record (name, value) to publish for ``key`` (RFC 6376 section 3.6.1)."""
    material = DkimKeyMaterial(key.algorithm, "", key.public_key)  # type: ignore[arg-type]
    return material.dns_record(key.selector, key.domain)


def _key_settings(fields: Mapping[str, Any]) -> tuple[str, str, str, int | None]:
    domain = normalise_domain(str(fields.get("domain") or ""))
    selector = str(fields.get("selector") or "").strip()
    if len(selector) > 63 or _SELECTOR.fullmatch(selector) is None:
        raise ValidationFailed.field(
            "selector", "must be one or more DNS labels of letters, digits and -"
        )
    algorithm = str(fields.get("algorithm") or "rsa")
    if algorithm not in ("rsa", "ed25519"):
        raise ValidationFailed.field("algorithm", "must be rsa or ed25519")
    if algorithm == "ed25519":
        return domain, selector, algorithm, None
    raw_bits = fields.get("bits")
    bits = DEFAULT_RSA_BITS if raw_bits is None else raw_bits
    if not isinstance(bits, int) or isinstance(bits, bool):
        raise ValidationFailed.field("bits", "must be a whole number of bits")
    if bits < MIN_RSA_BITS:
        raise ValidationFailed.field(
            "bits",
            f"RSA keys under {MIN_RSA_BITS} bits are refused: receivers treat them as weak "
            "(RFC 8301 section 3.2); use 2048",
        )
    if bits > MAX_RSA_BITS:
        raise ValidationFailed.field("bits", f"at most {MAX_RSA_BITS} bits")
    return domain, selector, algorithm, bits


async def list_dkim_keys(ctx: Context, caller: Caller) -> list[DkimKey]:
    async with ctx.db.read() as tx:
        return await DkimKeyRepo(tx, ctx.box, caller.tenant_id).list()


async def get_dkim_key(ctx: Context, caller: Caller, key_id: str) -> DkimKey:
    async with ctx.db.read() as tx:
        return await DkimKeyRepo(tx, ctx.box, caller.tenant_id).get(key_id)


def _duplicate_key(domain: str, selector: str) -> Conflict:
    message = f"A DKIM key for selector {selector!r} of {domain!r} already exists."
    return Conflict(message, errors=[FieldError("selector", message)])


async def create_dkim_key(ctx: Context, caller: Caller, fields: Mapping[str, Any]) -> DkimKey:
    """Generate and store a key pair; 409 when the (domain, selector) pair is taken."""
    domain, selector, algorithm, bits = _key_settings(fields)
    async with ctx.db.read() as tx:
        if await DkimKeyRepo(tx, ctx.box, caller.tenant_id).exists(domain, selector):
            raise _duplicate_key(domain, selector)
    # RSA key generation takes from tens of milliseconds to seconds: off the event loop.
    material = await asyncio.to_thread(
        generate_key,
        algorithm="ed25519" if algorithm == "ed25519" else "rsa",
        bits=bits or DEFAULT_RSA_BITS,
    )
    async with ctx.db.transaction() as tx:
        repo = DkimKeyRepo(tx, ctx.box, caller.tenant_id)
        key_id = await repo.create(
            domain=domain,
            selector=selector,
            algorithm=algorithm,
            bits=bits,
            public_key=material.public_key,
            private_key_pem=material.private_key_pem,
        )
        await audit_trail.record(
            tx,
            caller,
            "dkim_key.create",
            "dkim_key",
            key_id,
            f"{selector}._domainkey.{domain}",
            ["domain", "selector", "algorithm", "bits", "private_key"],
        )
        return await repo.get(key_id)


async def delete_dkim_key(ctx: Context, caller: Caller, key_id: str) -> None:
    """Delete a key; mail accepted afterwards is signed with the domain's next newest key
    (or not at all), mail already accepted keeps its signature."""
    async with ctx.db.transaction() as tx:
        repo = DkimKeyRepo(tx, ctx.box, caller.tenant_id)
        key = await repo.get(key_id)
        await repo.delete(key)
        await audit_trail.record(
            tx,
            caller,
            "dkim_key.delete",
            "dkim_key",
            key.id,
            f"{key.selector}._domainkey.{key.domain}",
        )


# Keystores ------------------------------------------------------------------------------


def _decode_content(value: object) -> bytes:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed.field("content", "is required (the file, base64-encoded)")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed.field("content", "is not valid base64") from None


def _ca_aliases(content: bytes) -> list[KeystoreAlias]:
    """The certificates of a CA bundle (PEM, or one DER certificate)."""
    try:
        if b"-----BEGIN" in content:
            certificates = x509.load_pem_x509_certificates(content)
        else:
            certificates = [x509.load_der_x509_certificate(content)]
    except ValueError:
        raise ValidationFailed.field(
            "content", "is not a PEM bundle of X.509 certificates"
        ) from None
    aliases: list[KeystoreAlias] = []
    for index, cert in enumerate(certificates, start=1):
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common = names[0].value if names else None
        alias = common if isinstance(common, str) and common.strip() else f"ca-{index}"
        aliases.append(
            KeystoreAlias(alias, cert.subject.rfc4514_string(), cert.not_valid_after_utc)
        )
    return aliases


def _pkcs12_aliases(content: bytes, password: str | None) -> list[KeystoreAlias]:
    keystore = load_pkcs12(content, password)
    return [KeystoreAlias(e.alias, e.subject, e.not_after) for e in keystore.entries]


async def list_keystores(ctx: Context, caller: Caller) -> list[KeystoreInfo]:
    async with ctx.db.read() as tx:
        return await KeystoreRepo(tx, ctx.box, caller.tenant_id).list()


@dataclass(frozen=True, slots=True)
class KeystoreUse:
    """What names one keystore, as (id, name) pairs: the mail servers and the inboxes (by
    account address) that trust a ``ca`` keystore, the accounts that sign with a PKCS#12 one."""

    servers: tuple[tuple[str, str], ...] = ()
    inboxes: tuple[tuple[str, str], ...] = ()
    signers: tuple[tuple[str, str], ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.servers or self.inboxes or self.signers)


def _use(
    keystore: KeystoreInfo, servers: list[MailServer], accounts: list[EmailAccount]
) -> KeystoreUse:
    """What names ``keystore`` among the tenant's ``servers`` and ``accounts``."""
    trusted = keystore.kind == "ca"
    return KeystoreUse(
        servers=tuple(
            (s.id, s.name) for s in servers if trusted and s.ca_keystore == keystore.name
        ),
        inboxes=tuple(
            (a.id, a.address)
            for a in accounts
            if trusted and a.imap is not None and a.imap.ca_keystore == keystore.name
        ),
        signers=tuple(
            (a.id, a.address)
            for a in accounts
            if a.smime is not None and a.smime.keystore_id == keystore.id
        ),
    )


async def keystore_uses(ctx: Context, caller: Caller) -> dict[str, KeystoreUse]:
    """Each keystore's use by id (a keystore nothing names is left out): the same references
    that make :func:`delete_keystore` refuse."""
    async with ctx.db.read() as tx:
        keystores = await KeystoreRepo(tx, ctx.box, caller.tenant_id).list()
        servers = await ServerRepo(tx, ctx.box, caller.tenant_id).list()
        accounts = await AccountRepo(tx, ctx.box, caller.tenant_id).list()
    uses = {k.id: _use(k, servers, accounts) for k in keystores}
    return {keystore_id: use for keystore_id, use in uses.items() if use.any}


async def get_keystore(ctx: Context, caller: Caller, keystore_id: str) -> KeystoreInfo:
    async with ctx.db.read() as tx:
        return await KeystoreRepo(tx, ctx.box, caller.tenant_id).get(keystore_id)


async def create_keystore(ctx: Context, caller: Caller, fields: Mapping[str, Any]) -> KeystoreInfo:
    """Parse, then store a keystore; see the module rules."""
    name = str(fields.get("name") or "").strip()
    if not name:
        raise ValidationFailed.field("name", "is required")
    kind = str(fields.get("kind") or "pkcs12")
    if kind not in KEYSTORE_KINDS:
        raise ValidationFailed.field("kind", "must be pkcs12 or ca")
    content = _decode_content(fields.get("content"))
    password = fields.get("password") or None
    if kind == "pkcs12":
        # Opening a PKCS#12 file runs its key derivation (thousands of rounds): a thread.
        aliases = await asyncio.to_thread(_pkcs12_aliases, content, password)
    else:
        aliases = _ca_aliases(content)
        password = None
    dates = [a.not_after for a in aliases if a.not_after is not None]
    async with ctx.db.transaction() as tx:
        repo = KeystoreRepo(tx, ctx.box, caller.tenant_id)
        keystore_id = await repo.create(
            name=name,
            kind=kind,
            aliases=aliases,
            not_after=min(dates) if dates else None,
            content=base64.b64encode(content).decode("ascii"),
            password=password,
        )
        await audit_trail.record(
            tx, caller, "keystore.create", "keystore", keystore_id, name, list(fields.keys())
        )
        return await repo.get(keystore_id)


async def replace_keystore(
    ctx: Context, caller: Caller, keystore_id: str, fields: Mapping[str, Any]
) -> KeystoreInfo:
    """New content for a ``ca`` keystore (its name and kind stay); see the module rules."""
    unknown = sorted(set(fields) - {"content"})
    if unknown:
        raise ValidationFailed.field(
            unknown[0], "cannot be changed; only the content of a ca keystore is replaced"
        )
    content = _decode_content(fields.get("content"))
    async with ctx.db.transaction() as tx:
        repo = KeystoreRepo(tx, ctx.box, caller.tenant_id)
        keystore = await repo.get(keystore_id)
        if keystore.kind != "ca":
            raise ValidationFailed.field(
                "content",
                f"the keystore {keystore.name!r} is a {keystore.kind} keystore, which is never "
                "replaced; upload a new keystore and point the accounts at it",
            )
        aliases = _ca_aliases(content)
        dates = [a.not_after for a in aliases if a.not_after is not None]
        await repo.replace(
            keystore,
            aliases=aliases,
            not_after=min(dates) if dates else None,
            content=base64.b64encode(content).decode("ascii"),
        )
        await audit_trail.record(
            tx, caller, "keystore.update", "keystore", keystore.id, keystore.name, ["content"]
        )
        return await repo.get(keystore_id)


async def delete_keystore(ctx: Context, caller: Caller, keystore_id: str) -> None:
    """Delete a keystore; 409 naming the accounts whose S/MIME identity is in it, or the
    servers and inboxes that trust it."""
    async with ctx.db.transaction() as tx:
        repo = KeystoreRepo(tx, ctx.box, caller.tenant_id)
        keystore = await repo.get(keystore_id)
        use = _use(
            keystore,
            await ServerRepo(tx, ctx.box, caller.tenant_id).list(),
            await AccountRepo(tx, ctx.box, caller.tenant_id).list(),
        )
        if use.signers:
            users = [address for _, address in use.signers]
            message = (
                f"The keystore {keystore.name!r} is the S/MIME identity of the email "
                f"account{'s' if len(users) > 1 else ''} {', '.join(users)}; change their "
                "smime setting first."
            )
            raise Conflict(message, errors=[FieldError("smime.keystore_id", message)])
        if use.servers or use.inboxes:
            trusting = trust.KeystoreUsers(
                tuple(name for _, name in use.servers), tuple(a for _, a in use.inboxes)
            )
            message = trusting.describe(keystore.name)
            raise DependantsConflict(
                message,
                {
                    "keystore_id": keystore.id,
                    "keystore_name": keystore.name,
                    "servers": list(trusting.servers),
                    "accounts": list(trusting.accounts),
                },
                errors=[FieldError("ca_keystore", message)],
            )
        await repo.delete(keystore)
        await audit_trail.record(
            tx, caller, "keystore.delete", "keystore", keystore.id, keystore.name
        )
