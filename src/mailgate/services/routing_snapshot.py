"""One read of a tenant's routing configuration, shared by every message of a request.

Besides stages, apps, accounts and servers, the snapshot holds what signing and templates
need, loaded once per request so that :func:`mailgate.services.send.prepare` does no IO:

* DKIM signers, newest key per domain. A :class:`DkimSigner` parses its PEM key once; built
  signers are kept across requests in a small LRU keyed by the DKIM key's row id (rows are
  immutable, so an id always means the same key; a deleted key is simply never asked for).
* S/MIME identities of the accounts that have ``smime``, from their keystores (parsed
  PKCS#12 files are cached the same way, by keystore id). A keystore that cannot be used is
  recorded with the reason, so only mail from that account is refused.
* The templates the request names.
"""

from __future__ import annotations

import asyncio
import base64
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from mailgate.compose.dkim import DkimSigner
from mailgate.compose.smime import Keystore, load_pkcs12, select_entry
from mailgate.compose.templates import TemplateSource
from mailgate.domain.model import App, EmailAccount
from mailgate.errors import MailgateError
from mailgate.services.context import Context
from mailgate.services.signing import SmimeIdentity, normalise_domain
from mailgate.services.templates import template_source
from mailgate.storage import apps, members, tenants
from mailgate.storage.accounts import AccountRepo
from mailgate.storage.servers import ServerRepo
from mailgate.storage.signing import DkimKeyRepo, KeystoreRepo
from mailgate.storage.templates import TemplateRepo

K = TypeVar("K")
V = TypeVar("V")

#: How many built DKIM signers and parsed keystores a process keeps.
CACHE_SIZE: Final = 256


class _Lru(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entry (one event loop)."""

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._maxsize:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


_SIGNERS: Final[_Lru[str, DkimSigner]] = _Lru(CACHE_SIZE)
_KEYSTORES: Final[_Lru[str, Keystore]] = _Lru(CACHE_SIZE)


def clear_caches() -> None:
    """Forget every cached signer and keystore (tests, and after key rotation)."""
    _SIGNERS.clear()
    _KEYSTORES.clear()


@dataclass(frozen=True, slots=True)
class RoutingSnapshot:
    """Stages, apps, accounts, servers and signing material of one tenant at one moment."""

    stage_servers: dict[str, str | None]
    apps_by_name: dict[str, App]
    apps_by_id: dict[str, App]
    accounts_by_address: dict[str, EmailAccount]
    default_account: EmailAccount | None
    default_server: str | None
    server_ids: frozenset[str]
    #: Engine name (``smtp``, ``msgraph`` …) by server id.
    server_engines: dict[str, str] = field(default_factory=dict)
    #: The newest DKIM key's signer by A-label domain, or why that key cannot sign.
    dkim_signers: dict[str, DkimSigner | str] = field(default_factory=dict)
    #: S/MIME identities by account id, for accounts with ``smime``.
    smime: dict[str, SmimeIdentity] = field(default_factory=dict)
    #: Templates named by the request, by name.
    templates: dict[str, TemplateSource] = field(default_factory=dict)
    #: The address of each user a test list names, by user id (deleted users are absent).
    user_emails: dict[str, str] = field(default_factory=dict)

    def dkim_signer_for(self, domain: str) -> DkimSigner | str | None:
        """The signer for ``domain``, else for its nearest parent domain that has a key
        (a parent's ``d=`` still aligns under relaxed DMARC, RFC 7489 section 3.1.1);
        a string says why the domain's key cannot sign; None: the domain has no key."""
        if not self.dkim_signers:
            return None
        try:
            name = normalise_domain(domain)
        except MailgateError:
            return None
        while "." in name:
            signer = self.dkim_signers.get(name)
            if signer is not None:
                return signer
            name = name.split(".", 1)[1]
        return None


async def _dkim_signers(repo: DkimKeyRepo) -> dict[str, DkimSigner | str]:
    signers: dict[str, DkimSigner | str] = {}
    for key, sealed in await repo.with_private_keys():  # newest first
        if key.domain in signers:
            continue
        signer = _SIGNERS.get(key.id)
        if signer is None:
            try:
                pem = repo.open_private_key(key.id, sealed)
                # Parsing an RSA key checks it (milliseconds): off the event loop.
                signer = await asyncio.to_thread(
                    DkimSigner,
                    key.domain,
                    key.selector,
                    pem,
                    "ed25519" if key.algorithm == "ed25519" else "rsa",
                )
            except MailgateError as exc:
                # Mail from this domain is refused with the reason; never sent unsigned.
                signers[key.domain] = f"its DKIM key {key.selector!r} cannot be used: {exc}"
                continue
            _SIGNERS.put(key.id, signer)
        signers[key.domain] = signer
    return signers


async def _smime(repo: KeystoreRepo, accounts: list[EmailAccount]) -> dict[str, SmimeIdentity]:
    signing = [a for a in accounts if a.smime is not None]
    if not signing:
        return {}
    stored = await repo.sealed(a.smime.keystore_id for a in signing if a.smime)
    identities: dict[str, SmimeIdentity] = {}
    for account in signing:
        assert account.smime is not None
        keystore_id = account.smime.keystore_id
        found = stored.get(keystore_id)
        if found is None:
            identities[account.id] = SmimeIdentity(None, f"its keystore {keystore_id} is gone")
            continue
        info, sealed = found
        try:
            keystore = _KEYSTORES.get(keystore_id)
            if keystore is None:
                if info.kind != "pkcs12":
                    raise ValueError(f"the keystore {info.name!r} holds no signing key")
                secret = repo.open_secret(keystore_id, sealed)
                content = base64.b64decode(secret.content)
                keystore = await asyncio.to_thread(load_pkcs12, content, secret.password)
                _KEYSTORES.put(keystore_id, keystore)
            entry = select_entry(keystore, account.smime.alias)
        except (MailgateError, ValueError) as exc:
            identities[account.id] = SmimeIdentity(None, f"the keystore cannot be used: {exc}")
            continue
        identities[account.id] = SmimeIdentity(entry)
    return identities


async def load_snapshot(
    ctx: Context, tenant_id: str, *, template_names: Collection[str] = ()
) -> RoutingSnapshot:
    """The tenant's configuration, with the templates among ``template_names``."""
    async with ctx.db.read() as tx:
        stage_list = await tenants.list_stages(tx, tenant_id)
        app_list = await apps.list_apps(tx, tenant_id)
        accounts = await AccountRepo(tx, ctx.box, tenant_id).list()
        servers = await ServerRepo(tx, ctx.box, tenant_id).list()
        signers = await _dkim_signers(DkimKeyRepo(tx, ctx.box, tenant_id))
        smime = await _smime(KeystoreRepo(tx, ctx.box, tenant_id), accounts)
        stored = await TemplateRepo(tx, tenant_id).by_names(template_names)
        named = {
            u for a in app_list for t in (a.test_list, *a.stage_lists.values()) for u in t.users
        }
        users = await members.user_emails(tx, tenant_id, named) if named else {}
    return RoutingSnapshot(
        stage_servers={s.name: s.mail_server_id for s in stage_list},
        apps_by_name={a.name: a for a in app_list},
        apps_by_id={a.id: a for a in app_list},
        accounts_by_address={a.address.lower(): a for a in accounts},
        default_account=next((a for a in accounts if a.is_default), None),
        default_server=next((s.id for s in servers if s.is_default), None),
        server_ids=frozenset(s.id for s in servers),
        server_engines={s.id: str(s.engine) for s in servers},
        dkim_signers=signers,
        smime=smime,
        templates={name: template_source(t) for name, t in stored.items()},
        user_emails=users,
    )
