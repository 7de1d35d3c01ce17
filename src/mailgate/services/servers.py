"""Mail servers (email configurations): every rule of API.md and SPEC.md section 1.

Rules applied here: one server per stage (409 naming the stage and the server holding it),
one default per tenant (setting a new default clears the old in the same transaction),
port 25 refused unless the instance allows it, write-only secrets that an omitted or blank
value keeps, changing a field that decides where or how a secret travels (the schema's
secret-bound fields) requires the secret again, and password
AUTH over an unencrypted connection only with ``allow_insecure_auth``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mailgate.domain import server_deletion
from mailgate.domain.model import MailServer
from mailgate.domain.providers import get_provider
from mailgate.domain.routing import route_again
from mailgate.domain.server_deletion import Dependants, Reassignment
from mailgate.domain.server_schema import (
    SERVER_FIELDS,
    SERVER_NOT_NULLABLE,
    SERVER_SECRETS,
    changed_secret_bound,
    server_problems,
)
from mailgate.domain.servers import (
    DEFAULT_PORTS,
    AuthKind,
    Engine,
    Security,
    ServerStatus,
    TlsVersion,
)
from mailgate.errors import Conflict, DependantsConflict, FieldError, ValidationFailed
from mailgate.services import audit_trail, trust
from mailgate.services.context import Caller, Context
from mailgate.storage import queue, tenants
from mailgate.storage import server_deletion as deletion_store
from mailgate.storage.base import Tx
from mailgate.storage.servers import ServerRepo

#: Secret fields: API name -> key in the sealed mapping (declared in the server schema).
SECRET_FIELDS: dict[str, str] = SERVER_SECRETS

PORT_25_MESSAGE = (
    "port 25 is refused: it is meant for server-to-server relay, is blocked by most "
    "providers and is abused for spam, which harms the sender domain's reputation. Use 587 "
    "(STARTTLS) or 465 (implicit TLS); an instance administrator can allow port 25 with "
    "MAILGATE_ALLOW_PORT_25=true."
)

#: The plain settings a new server gets when they are not given (from the server schema).
DEFAULTS: dict[str, Any] = {
    f.name: f.default
    for f in SERVER_FIELDS
    if not f.secret and f.name not in ("name", "port", "stages")
}


def split_secrets(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Separate the write-only secrets from the plain fields; blank secrets are dropped."""
    plain = dict(fields)
    secrets: dict[str, str] = {}
    for api_name, key in SECRET_FIELDS.items():
        if "." in api_name:
            outer, inner = api_name.split(".", 1)
            container = plain.get(outer)
            if isinstance(container, dict) and inner in container:
                container = dict(container)
                value = container.pop(inner)
                plain[outer] = container
                if value:
                    secrets[key] = str(value)
        elif api_name in plain:
            value = plain.pop(api_name)
            if value:
                secrets[key] = str(value)
    return plain, secrets


def _fill_from_provider(values: dict[str, Any], given: Mapping[str, Any]) -> None:
    key = values.get("provider")
    if not key:
        return
    preset = get_provider(key)
    if preset is None:
        raise ValidationFailed.field("provider", f"unknown provider {key!r}; see /providers")
    for name, preset_value in (
        ("host", preset.host),
        ("port", preset.port),
        ("security", preset.security.value),
    ):
        if name not in given or given[name] is None:
            values[name] = preset_value
    if "engine" not in given:
        values["engine"] = preset.engine.value


def _validate(
    values: Mapping[str, Any], secrets: Mapping[str, str], *, allow_port_25: bool
) -> None:
    problems = server_problems(values)
    if problems:
        errors = [FieldError(field, message) for field, message in problems]
        raise ValidationFailed(errors[0].message, errors=errors)
    errors = []
    engine = Engine(values["engine"])
    security = Security(values["security"])
    auth = AuthKind(values["auth"])
    if engine is Engine.SMTP:
        if not values.get("host"):
            errors.append(FieldError("host", "is required for the smtp engine"))
        if values["port"] == 25 and not allow_port_25:
            errors.append(FieldError("port", PORT_25_MESSAGE))
        if auth is AuthKind.PASSWORD:
            if not values.get("username"):
                errors.append(FieldError("username", "is required for password authentication"))
            if "password" not in secrets:
                errors.append(FieldError("password", "is required for password authentication"))
            if security is Security.NONE and not values.get("allow_insecure_auth"):
                errors.append(
                    FieldError(
                        "allow_insecure_auth",
                        "password authentication over an unencrypted connection sends the "
                        "password in clear text; choose security starttls or tls, or set "
                        "allow_insecure_auth: true to accept the risk",
                    )
                )
        if auth is AuthKind.XOAUTH2:
            oauth = values.get("oauth") or {}
            if oauth.get("provider") not in ("google", "microsoft"):
                errors.append(FieldError("oauth.provider", "must be google or microsoft"))
            if not values.get("username"):
                errors.append(FieldError("username", "is required for xoauth2 (the mailbox)"))
    elif engine is Engine.SENDGRID:
        if "api_key" not in secrets:
            errors.append(FieldError("api_key", "is required for the sendgrid engine"))
    elif engine is Engine.MSGRAPH:
        if not values.get("sender_upn"):
            errors.append(FieldError("sender_upn", "is required for the msgraph engine"))
        oauth = values.get("oauth") or {}
        if not oauth.get("client_id"):
            errors.append(FieldError("oauth.client_id", "is required for the msgraph engine"))
        if not oauth.get("tenant_id"):
            errors.append(FieldError("oauth.tenant_id", "is required for the msgraph engine"))
    if errors:
        raise ValidationFailed(errors[0].message, errors=errors)


async def _check_stages(
    tx: Tx, repo: ServerRepo, caller: Caller, names: list[str], server_id: str | None
) -> list[str]:
    """Stage ids for ``names``; 422 for an unknown stage, 409 for one held elsewhere."""
    ids: list[str] = []
    for index, name in enumerate(names):
        stage = await tenants.get_stage(tx, caller.tenant_id, name)
        if stage is None:
            raise ValidationFailed.field(f"stages[{index}]", f"no stage named {name!r}")
        if stage.mail_server_id is not None and stage.mail_server_id != server_id:
            holder = await repo.get(stage.mail_server_id)
            message = (
                f"Stage {name!r} already uses mail server {holder.name!r}; a stage has one "
                "mail server. Remove the stage from that server first."
            )
            raise Conflict(message, errors=[FieldError(f"stages[{index}]", message)])
        ids.append(stage.id)
    return ids


async def _check_fallback(repo: ServerRepo, values: Mapping[str, Any], own: str | None) -> None:
    fallback = values.get("fallback_server_id")
    if fallback is None:
        return
    if fallback == own:
        raise ValidationFailed.field("fallback_server_id", "a server cannot be its own fallback")
    if await repo.find(fallback) is None:
        raise ValidationFailed.field("fallback_server_id", f"no mail server {fallback!r}")


async def list_servers(ctx: Context, caller: Caller) -> list[MailServer]:
    async with ctx.db.read() as tx:
        return await ServerRepo(tx, ctx.box, caller.tenant_id).list()


async def get_server(ctx: Context, caller: Caller, server_id: str) -> MailServer:
    async with ctx.db.read() as tx:
        return await ServerRepo(tx, ctx.box, caller.tenant_id).get(server_id)


async def create_server(ctx: Context, caller: Caller, fields: Mapping[str, Any]) -> MailServer:
    """Create a server from the API fields that were given."""
    plain, secrets = split_secrets(fields)
    values: dict[str, Any] = {**DEFAULTS, **{k: v for k, v in plain.items() if v is not None}}
    _fill_from_provider(values, plain)
    if "port" not in values:
        values["port"] = DEFAULT_PORTS[Security(values["security"])]
    stage_names: list[str] = list(plain.get("stages") or [])
    _validate(values, secrets, allow_port_25=ctx.policy.allow_port_25)
    async with ctx.db.transaction() as tx:
        repo = ServerRepo(tx, ctx.box, caller.tenant_id)
        stage_ids = await _check_stages(tx, repo, caller, stage_names, None)
        await _check_fallback(repo, values, None)
        await trust.check_reference(tx, ctx.box, caller.tenant_id, values)
        if values["is_default"]:
            await repo.clear_default()
        server_id = await repo.create(values, secrets)
        await repo.assign_stages(server_id, stage_ids)
        await audit_trail.record(
            tx,
            caller,
            "mail_server.create",
            "mail_server",
            server_id,
            values["name"],
            list(fields.keys()),
        )
        return await repo.get(server_id)


def _stored_values(server: MailServer) -> dict[str, Any]:
    """The plain values of ``server`` as the service handles them (enums as their values)."""
    current = {k: getattr(server, k) for k in DEFAULTS}
    current["name"] = server.name
    current["port"] = server.port
    for key in ("engine", "security", "auth", "min_tls_version"):
        current[key] = current[key].value if hasattr(current[key], "value") else current[key]
    return current


def _require_secret_again(
    server: MailServer, new_values: Mapping[str, Any], new_secrets: Mapping[str, str]
) -> None:
    """422 naming a stored secret when a field that decides where or how secrets travel
    (``SERVER_SECRET_BOUND``: host, port, username, security, TLS trust, API and token URLs,
    ...) differs from the stored one and that secret is not given again."""
    changed = changed_secret_bound(_stored_values(server), new_values)
    if not changed:
        return
    needed = [
        (api_name, key)
        for api_name, key in SECRET_FIELDS.items()
        if key in server.secrets_set and key not in new_secrets
    ]
    if needed:
        api_name = needed[0][0]
        raise ValidationFailed.field(
            api_name,
            f"changing {', '.join(changed)} requires the {api_name} again, so a stored "
            "secret is never sent to a server it was not entered for",
        )


async def update_server(
    ctx: Context, caller: Caller, server_id: str, fields: Mapping[str, Any]
) -> MailServer:
    """Apply a PATCH: only the fields given change; omitted or blank secrets are kept.

    An explicit null for a field that cannot be cleared (``SERVER_NOT_NULLABLE``) is a 422.
    """
    plain, new_secrets = split_secrets(fields)
    nulls = [
        FieldError(f, "must not be null")
        for f in sorted(SERVER_NOT_NULLABLE)
        if f in plain and plain[f] is None
    ]
    if nulls:
        raise ValidationFailed(nulls[0].message, errors=nulls)
    async with ctx.db.transaction() as tx:
        repo = ServerRepo(tx, ctx.box, caller.tenant_id)
        server = await repo.get(server_id)
        current = _stored_values(server)
        updates = {k: v for k, v in plain.items() if k != "stages"}
        if "oauth" in updates and updates["oauth"] is not None and server.oauth:
            updates["oauth"] = {**server.oauth, **updates["oauth"]}
        values = {**current, **updates}
        if plain.get("provider"):
            _fill_from_provider(values, plain)
        _require_secret_again(server, values, new_secrets)
        secrets = {**await repo.secrets(server_id), **new_secrets}
        _validate(values, secrets, allow_port_25=ctx.policy.allow_port_25)
        await _check_fallback(repo, values, server_id)
        await trust.check_reference(tx, ctx.box, caller.tenant_id, values)
        if "stages" in plain:
            stage_ids = await _check_stages(
                tx, repo, caller, list(plain["stages"] or []), server_id
            )
            await repo.assign_stages(server_id, stage_ids)
        if values["is_default"] and not server.is_default:
            await repo.clear_default(except_id=server_id)
        await repo.update(server, values, secrets)
        # Mail held because this server's credentials failed gets a new try with the edit.
        await queue.release_held(tx, server_id)
        await audit_trail.record(
            tx,
            caller,
            "mail_server.update",
            "mail_server",
            server_id,
            values["name"],
            list(fields.keys()),
        )
        return await repo.get(server_id)


async def dependants(ctx: Context, caller: Caller, server_id: str) -> Dependants:
    """What depends on a server: its stages, accounts, default flag and waiting mail."""
    async with ctx.db.read() as tx:
        server = await ServerRepo(tx, ctx.box, caller.tenant_id).get(server_id)
        return await deletion_store.dependants(tx, caller.tenant_id, server_id, server.name)


async def delete_server(
    ctx: Context, caller: Caller, server_id: str, plan: Reassignment | None = None
) -> Dependants:
    """Delete a server after moving what depends on it as ``plan`` says.

    409 naming the dependants when one needs a reassignment that ``plan`` lacks; 422 naming
    the field when a target is not another server of the tenant. Stages and accounts go to
    the named server or to none (an account without a server cannot send); the named server
    becomes the default; waiting mail goes to the named server, or with ``reroute`` to its
    stage's server, else its account's server, as the configuration stands after the move.
    """
    plan = plan or Reassignment()
    async with ctx.db.transaction() as tx:
        repo = ServerRepo(tx, ctx.box, caller.tenant_id)
        server = await repo.get(server_id)
        dep = await deletion_store.dependants(tx, caller.tenant_id, server_id, server.name)
        others = {s.id for s in await repo.list() if s.id != server_id}
        bad = server_deletion.invalid(dep, plan, others)
        if bad:
            raise ValidationFailed(bad[0].message, errors=bad)
        lacking = server_deletion.missing(dep, plan)
        if lacking:
            raise DependantsConflict(server_deletion.describe(dep), dep.as_dict(), errors=lacking)

        def target(value: str | None) -> str | None:
            return None if value in (None, server_deletion.NONE) else value

        if dep.stages:
            await deletion_store.move_stages(
                tx, caller.tenant_id, server_id, target(plan.stages_to)
            )
        if dep.accounts:
            await deletion_store.move_accounts(
                tx, caller.tenant_id, server_id, target(plan.accounts_to)
            )
        new_default = target(plan.default_to)
        if dep.is_default and new_default is not None:
            await deletion_store.set_default(tx, caller.tenant_id, new_default)
        if dep.mail:
            await _move_mail(tx, ctx, caller, server_id, plan.mail_to)
        await repo.delete(server)
        await audit_trail.record(
            tx,
            caller,
            "mail_server.delete",
            "mail_server",
            server_id,
            server.name,
            [
                f"{k}={v}"
                for k, v in (
                    ("stages_to", plan.stages_to),
                    ("accounts_to", plan.accounts_to),
                    ("default_to", plan.default_to),
                    ("mail_to", plan.mail_to),
                )
                if v is not None
            ],
        )
        if dep.mail:
            await queue.notify(tx)
    if dep.mail and ctx.wake is not None:
        ctx.wake()
    return dep


async def _move_mail(
    tx: Tx, ctx: Context, caller: Caller, server_id: str, mail_to: str | None
) -> None:
    waiting = await deletion_store.waiting_mail(tx, server_id)
    if mail_to != server_deletion.REROUTE:
        await deletion_store.move_mail(tx, {m: mail_to for m, _, _ in waiting})
        return
    # The stages, accounts and default were moved above: route by the routing after the
    # delete, as the worker routes mail of a deleted server (mailgate.worker.reroute).
    routing = (await deletion_store.routing_of(tx, [caller.tenant_id], without=server_id))[
        caller.tenant_id
    ]
    await deletion_store.move_mail(
        tx,
        {
            m: route_again(routing, stage=stage, account_id=account).server_id
            for m, stage, account in waiting
        },
    )


async def draft_server(
    ctx: Context, caller: Caller, fields: Mapping[str, Any]
) -> tuple[MailServer, dict[str, str]]:
    """Unsaved settings (the add/edit dialog) as a transient server and the secrets to use.

    ``fields`` has the shape of the create body plus an optional ``server_id``. The rules of
    saving apply: defaults, provider presets and validation (422 naming the field; port 25
    included). With ``server_id`` (a server of the caller's tenant, else 404), secrets that
    are omitted or blank are taken from that server, but only while every secret-bound field
    (``SERVER_SECRET_BOUND``) equals the stored one; otherwise 422 naming the secret, as an
    update would.
    Nothing is written.
    """
    given = dict(fields)
    server_id = given.pop("server_id", None)
    plain, secrets = split_secrets(given)
    values: dict[str, Any] = {**DEFAULTS, **{k: v for k, v in plain.items() if v is not None}}
    _fill_from_provider(values, plain)
    if values.get("port") is None:
        values["port"] = DEFAULT_PORTS[Security(values["security"])]
    stored: MailServer | None = None
    if server_id is not None:
        async with ctx.db.read() as tx:
            repo = ServerRepo(tx, ctx.box, caller.tenant_id)
            stored = await repo.get(str(server_id))
            stored_secrets = await repo.secrets(stored.id)
        _require_secret_again(stored, values, secrets)
        secrets = {**stored_secrets, **secrets}
    _validate(values, secrets, allow_port_25=ctx.policy.allow_port_25)
    async with ctx.db.read() as tx:
        await trust.check_reference(tx, ctx.box, caller.tenant_id, values)
    now = datetime.now(UTC)
    server = MailServer(
        id=stored.id if stored else "unsaved",
        tenant_id=caller.tenant_id,
        name=str(values.get("name") or (stored.name if stored else "")),
        engine=Engine(values["engine"]),
        provider=values.get("provider"),
        host=values.get("host"),
        port=int(values["port"]),
        security=Security(values["security"]),
        min_tls_version=TlsVersion(values["min_tls_version"]),
        verify_certificate=bool(values["verify_certificate"]),
        ca_certificates=values.get("ca_certificates"),
        ca_keystore=values.get("ca_keystore"),
        auth=AuthKind(values["auth"]),
        username=values.get("username"),
        allow_insecure_auth=bool(values["allow_insecure_auth"]),
        oauth=values.get("oauth"),
        api_base_url=values.get("api_base_url"),
        sender_upn=values.get("sender_upn"),
        timeout_seconds=float(values["timeout_seconds"]),
        max_connections=int(values["max_connections"]),
        rate_limit_per_minute=values.get("rate_limit_per_minute"),
        is_default=False,
        fallback_server_id=None,
        options=dict(values.get("options") or {}),
        status=ServerStatus.UNKNOWN,
        status_detail=None,
        secrets_set=frozenset(secrets),
        version=0,
        created_at=now,
        updated_at=now,
    )
    return server, secrets
