"""Accepting mail: validate, route, compose once, commit to the queue (SPEC.md sections 2, 4).

A message is composed exactly once, here, so every retry sends identical bytes. A 2xx answer
means the message is committed. The steps read as a list (ARCHITECTURE.md house style 5):
``resolve_app → choose_sender → choose_server → render_template → make_draft →
check_limits → redirect → compose → smime_sign → dkim_sign → screen_suppressions →
enqueue``; ``redirect`` applies the app's test list for the message's stage. Suppressed
recipients (after the test-list redirection) are left out and named in the answer; a
message with none left is a 422 (``mailgate.services.suppressions``).

Templates: ``template: {name, variables}`` fills the subject, text and HTML that the request
leaves out (a field given in the request wins over the template's). Signing happens here,
once, so that every retry sends the very same signed bytes: S/MIME first when the sender
account has an identity, DKIM last when the sender's domain (or a parent) has a key. A
message that cannot be signed is refused with a 422 naming ``from``; it is never queued
unsigned (SPEC.md section 3, "Signing").
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from mailgate import metrics
from mailgate.compose import Address, check_limits, compose, make_draft, new_message_id
from mailgate.compose.addresses import parse_address
from mailgate.domain.ids import new_id
from mailgate.domain.model import EmailAccount
from mailgate.domain.routing import Recipients, RouteError, choose_sender, choose_server
from mailgate.errors import Conflict, FieldError, RequestError, ValidationFailed
from mailgate.services import suppressions
from mailgate.services.apps import redirect
from mailgate.services.context import Caller, Context
from mailgate.services.policies import take_quota
from mailgate.services.routing_snapshot import RoutingSnapshot, load_snapshot
from mailgate.services.signing import sign_message
from mailgate.services.templates import fill_from_template
from mailgate.storage import idempotency, queue
from mailgate.storage.base import utcnow

MAX_BATCH = 500
MAX_METADATA_BYTES = 16 * 1024
#: Deepest nesting of objects and arrays in ``metadata`` (the log must be able to show it).
MAX_METADATA_DEPTH = 32
#: Batches at least this long are prepared in a worker thread when they sign or render,
#: so that the event loop keeps serving other requests meanwhile.
THREAD_BATCH_MIN = 50
#: How many threads share such a batch.
SIGNING_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class Accepted:
    id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The HTTP status and JSON body of a send request (stored for idempotent replays)."""

    status: int
    body: Any


def request_hash(payload: Any) -> str:
    """A stable hash of a request body, for Idempotency-Key comparisons."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _route_error(exc: RouteError) -> ValidationFailed:
    return ValidationFailed(exc.message, errors=[FieldError(exc.field, exc.message)])


def _resolve_app(caller: Caller, snap: RoutingSnapshot, requested: str | None) -> str | None:
    bound = caller.principal.app_id
    if bound is not None:
        bound_app = snap.apps_by_id.get(bound)
        bound_name = bound_app.name if bound_app else None
        if requested is not None and requested != bound_name:
            raise ValidationFailed.field("app", f"this token may only send for app {bound_name!r}")
        return bound
    if requested is None:
        return None
    app = snap.apps_by_name.get(requested)
    if app is None:
        raise ValidationFailed.field("app", f"no app named {requested!r} in this tenant")
    return app.id


@dataclass(frozen=True, slots=True)
class Route:
    """Where one message goes: its app, stage, sender account and mail server."""

    app_id: str | None
    stage: str | None
    account: EmailAccount
    server_id: str


def resolve_route(
    caller: Caller,
    snap: RoutingSnapshot,
    *,
    app: str | None,
    stage: str | None,
    sender: object,
) -> Route:
    """The app (an app-bound token binds it), the stage, the sender account (``sender`` is
    the requested ``from`` address, None for the tenant default) and the mail server of one
    message (SPEC.md section 2); a ValidationFailed names ``app``, ``stage`` or ``from``.
    Does no IO."""
    app_id = _resolve_app(caller, snap, app)
    if stage is not None and stage not in snap.stage_servers:
        raise ValidationFailed.field("stage", f"no stage named {stage!r} in this tenant")
    try:
        wanted = parse_address(sender, field="from") if sender else None
        account = choose_sender(
            snap.accounts_by_address, snap.default_account, wanted.email if wanted else None
        )
        stage_server = snap.stage_servers.get(stage) if stage else None
        server_id = choose_server(
            stage_server=stage_server, account=account, default_server=snap.default_server
        )
    except RouteError as exc:
        raise _route_error(exc) from None
    return Route(app_id=app_id, stage=stage, account=account, server_id=server_id)


def _nesting(value: object) -> int:
    """How deep objects and arrays nest in ``value`` (0 for a scalar); no recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            stack.extend((inner, depth + 1) for inner in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((inner, depth + 1) for inner in item)
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_METADATA_DEPTH:
            break
    return deepest


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@lru_cache(maxsize=256)
def _sender_address(address: str, name: str | None) -> Address:
    """A sender account's validated From address; a ValidationFailed names ``from``.

    Every message of an account sends from the same address: it is validated once."""
    return parse_address({"email": address, "name": name}, field="from")


def prepare(
    ctx: Context, caller: Caller, snap: RoutingSnapshot, item: Mapping[str, Any], *, now: datetime
) -> queue.NewMessage:
    """Validate, route, render, compose and sign one message; raises a RequestError naming
    the field. Does no IO: everything it needs is in ``snap``."""
    route = resolve_route(
        caller, snap, app=item.get("app"), stage=item.get("stage"), sender=item.get("from")
    )
    app_id, stage, account, server_id = route.app_id, route.stage, route.account, route.server_id
    sender = _sender_address(account.address, account.display_name)
    reply_to = item.get("reply_to")
    if reply_to is None and account.reply_to:
        reply_to = account.reply_to
    subject, text, html = fill_from_template(item, snap.templates)
    draft = make_draft(
        from_=sender,
        to=item.get("to"),
        cc=item.get("cc"),
        bcc=item.get("bcc"),
        reply_to=reply_to,
        subject=subject,
        text=text,
        html=html,
        headers=item.get("headers"),
        attachments=item.get("attachments"),
        max_attachment_bytes=ctx.policy.max_message_bytes,
    )
    check_limits(
        draft, max_recipients=ctx.policy.max_recipients, max_bytes=ctx.policy.max_message_bytes
    )
    meta = item.get("metadata")
    if meta is not None:
        if _nesting(meta) > MAX_METADATA_DEPTH:
            raise ValidationFailed.field(
                "metadata", f"at most {MAX_METADATA_DEPTH} levels of nested objects and arrays"
            )
        if len(json.dumps(meta, default=str)) > MAX_METADATA_BYTES:
            raise ValidationFailed.field("metadata", f"at most {MAX_METADATA_BYTES} bytes of JSON")

    asked = Recipients(
        to=tuple(a.wire_email for a in draft.to),
        cc=tuple(a.wire_email for a in draft.cc),
        bcc=tuple(a.wire_email for a in draft.bcc),
    )
    app = snap.apps_by_id.get(app_id) if app_id else None
    routing = redirect(asked, app, stage, snap.user_emails)
    original: tuple[Address, ...] | None = None
    if routing.redirected:
        original = draft.to + draft.cc
        draft = dataclasses.replace(
            draft, to=tuple(Address(email=a) for a in routing.recipients), cc=(), bcc=()
        )
    message_id = new_message_id(account.address.rsplit("@", 1)[1])
    raw = compose(draft, message_id=message_id, date=now, original_recipients=original)
    raw = sign_message(
        raw,
        account=account,
        engine=snap.server_engines.get(server_id or ""),
        smime=snap.smime.get(account.id),
        dkim=snap.dkim_signer_for(account.address.rsplit("@", 1)[1]),
        now=now,
    )
    original_json = None
    if routing.original is not None:
        original_json = {
            "to": list(routing.original.to),
            "cc": list(routing.original.cc),
            "bcc": list(routing.original.bcc),
        }
    return queue.NewMessage(
        id=new_id(),
        tenant_id=caller.tenant_id,
        app_id=app_id,
        stage=stage,
        account_id=account.id,
        server_id=server_id,
        message_id=message_id,
        mail_from=draft.from_.wire_email,
        from_header=f"{account.display_name} <{account.address}>",
        subject=draft.subject[:1000],
        recipients=tuple(r.lower() for r in routing.recipients),
        redirected=routing.redirected,
        original_recipients=original_json,
        smtputf8=draft.needs_smtputf8,
        raw=raw,
        meta=meta,
        send_at=_aware(item.get("send_at")),
    )


async def _replay(
    ctx: Context, caller: Caller, key: str, digest: str, now: datetime
) -> SendOutcome | None:
    async with ctx.db.read() as tx:
        stored = await idempotency.find(tx, caller.tenant_id, key, now=now)
    if stored is None:
        return None
    if stored.request_hash != digest:
        raise Conflict(
            "This Idempotency-Key was used within 24 hours for a different request; "
            "use a new key for a new message.",
            errors=[FieldError("Idempotency-Key", "reused with a different payload")],
        )
    return SendOutcome(stored.status_code, stored.response)


async def commit(
    ctx: Context,
    caller: Caller,
    items: Sequence[queue.NewMessage],
    outcome: SendOutcome,
    *,
    key: str | None,
    digest: str,
    now: datetime,
    screened: suppressions.Screened | None = None,
) -> None:
    """Commit ``items`` (and the idempotency record for ``key``, and the recipients
    ``screened`` left out) in one transaction, then wake in-process workers; once this
    returns the messages are durable. Mail alone (no idempotency key, nothing suppressed,
    no quota) is written in one hand-over to the database (:func:`queue.enqueue_alone`)."""
    alone = (
        bool(items)
        and key is None
        and (screened is None or not screened.suppressed)
        and await queue.enqueue_alone(ctx.db, items, tenant_id=caller.tenant_id, now=now)
    )
    if not alone:
        # The general transaction: the quota, the suppressed recipients, the idempotency
        # record are written with the mail.
        async with ctx.db.transaction() as tx:
            if items:
                await take_quota(tx, caller.tenant_id, [m.app_id for m in items], now=now)
            await queue.enqueue(tx, items, now=now)
            await suppressions.record(tx, items, screened, now=now)
            if key is not None:
                await idempotency.store(
                    tx,
                    caller.tenant_id,
                    key,
                    request_hash=digest,
                    status_code=outcome.status,
                    response=outcome.body,
                    now=now,
                )
            if items:
                await queue.notify(tx)
    for (tenant_id, server_id), count in Counter((m.tenant_id, m.server_id) for m in items).items():
        metrics.accepted(tenant_id, server_id, count)
    if items and ctx.wake is not None:
        ctx.wake()


async def send_one(
    ctx: Context, caller: Caller, item: Mapping[str, Any], *, idempotency_key: str | None
) -> SendOutcome:
    """Accept one message: 202 with its id, or an error naming the field."""
    now = utcnow()
    # Hashing a body costs tens of microseconds a message: only for idempotent requests.
    digest = request_hash(item) if idempotency_key is not None else ""
    if idempotency_key is not None:
        replay = await _replay(ctx, caller, idempotency_key, digest, now)
        if replay is not None:
            return replay
    names = _template_names([item])
    snap = await load_snapshot(ctx, caller.tenant_id, template_names=names)
    if names:
        # A render waits for its child process (up to its time budget): not on the loop.
        message = await asyncio.to_thread(prepare, ctx, caller, snap, item, now=now)
    else:
        message = prepare(ctx, caller, snap, item, now=now)
    screened = await suppressions.screen(ctx, caller.tenant_id, [message], now=now)
    if message.id in screened.refused:
        raise screened.refused[message.id]
    message = screened.kept[0]
    body: dict[str, Any] = {"id": message.id, "status": "queued", "message_id": message.message_id}
    if message.id in screened.suppressed:
        body["suppressed"] = suppressions.suppressed_json(screened.suppressed[message.id])
    outcome = SendOutcome(202, body)
    await commit(
        ctx,
        caller,
        [message],
        outcome,
        key=idempotency_key,
        digest=digest,
        now=now,
        screened=screened,
    )
    return outcome


def _template_names(items: Sequence[Mapping[str, Any]]) -> set[str]:
    """The template names the request refers to (the snapshot loads only those)."""
    names: set[str] = set()
    for item in items:
        ref = item.get("template")
        if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
            names.add(ref["name"])
    return names


def _is_costly(snap: RoutingSnapshot) -> bool:
    """Whether preparing messages may hold the CPU long: RSA DKIM, S/MIME or templates.

    Ed25519 DKIM is mostly Python canonicalisation, which threads only slow down (GIL).
    """
    rsa = any(not isinstance(s, str) and s.algorithm == "rsa" for s in snap.dkim_signers.values())
    return rsa or bool(snap.smime or snap.templates)


def _prepare_batch(
    ctx: Context,
    caller: Caller,
    snap: RoutingSnapshot,
    items: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    offset: int = 0,
) -> tuple[list[queue.NewMessage], list[dict[str, Any]]]:
    """The accepted messages of (a slice starting at ``offset`` of) a batch, and one result
    per item in request order."""
    accepted: list[queue.NewMessage] = []
    results: list[dict[str, Any]] = []
    for index, item in enumerate(items, start=offset):
        try:
            message = prepare(ctx, caller, snap, item, now=now)
        except RequestError as exc:
            results.append(
                {
                    "index": index,
                    "status": exc.status,
                    "detail": exc.detail,
                    "errors": [{"field": e.field, "message": e.message} for e in exc.errors],
                }
            )
            continue
        accepted.append(message)
        results.append(
            {"index": index, "status": 202, "id": message.id, "message_id": message.message_id}
        )
    return accepted, results


async def send_batch(
    ctx: Context,
    caller: Caller,
    items: Sequence[Mapping[str, Any]],
    *,
    idempotency_key: str | None,
) -> SendOutcome:
    """Accept up to 500 messages; valid ones are committed together, others get errors."""
    if len(items) > MAX_BATCH:
        raise ValidationFailed.field("messages", f"at most {MAX_BATCH} messages per batch")
    now = utcnow()
    digest = request_hash(list(items)) if idempotency_key is not None else ""
    if idempotency_key is not None:
        replay = await _replay(ctx, caller, idempotency_key, digest, now)
        if replay is not None:
            return replay
    snap = await load_snapshot(ctx, caller.tenant_id, template_names=_template_names(items))
    if len(items) >= THREAD_BATCH_MIN and _is_costly(snap):
        # Signing and rendering hold the CPU for up to seconds per batch: threads keep the
        # event loop answering meanwhile, and OpenSSL's private-key operations (which
        # release the GIL) run on several cores at once.
        step = -(-len(items) // SIGNING_THREADS)
        parts = await asyncio.gather(
            *(
                asyncio.to_thread(
                    _prepare_batch, ctx, caller, snap, items[i : i + step], now=now, offset=i
                )
                for i in range(0, len(items), step)
            )
        )
        accepted = [m for part_accepted, _ in parts for m in part_accepted]
        results = [r for _, part_results in parts for r in part_results]
    elif snap.templates:
        # Renders wait for their child processes: off the loop, even for a small batch.
        accepted, results = await asyncio.to_thread(
            _prepare_batch, ctx, caller, snap, items, now=now
        )
    else:
        accepted, results = _prepare_batch(ctx, caller, snap, items, now=now)
    screened = await suppressions.screen(ctx, caller.tenant_id, accepted, now=now)
    suppressions.mark_results(results, screened)
    outcome = SendOutcome(200, {"items": results})
    await commit(
        ctx,
        caller,
        screened.kept,
        outcome,
        key=idempotency_key,
        digest=digest,
        now=now,
        screened=screened,
    )
    return outcome
