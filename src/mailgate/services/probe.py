"""Test connection for people (SPEC.md section 5): a saved server, or the settings being edited.

:class:`Prober` wires the connection probe (:func:`mailgate.engines.probe.probe`) to the
product. For every test it

1. resolves what to test: a stored server and its secrets, or unsaved settings validated by
   the rules of saving (:func:`mailgate.services.servers.draft_server`);
2. admits the test through the rate limits (:mod:`mailgate.services.ratelimit`);
3. probes through the guarded dialer built from the instance network policy, with per-step
   timeouts capped at :data:`INTERACTIVE_STEP_TIMEOUT` (a person is waiting);
4. records the audit entry ``mail_server.test`` and one log line, neither with a secret.

Permission checks (``email_configurations:manage``) happen before a :class:`Prober` is
called: in the web dependencies, or by :func:`operator_caller` at the command line. A probe
never sends a message: it opens the delivery session and says QUIT where delivery says MAIL.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from mailgate import metrics
from mailgate.domain.model import MailServer
from mailgate.domain.roles import Permission, Principal, PrincipalKind
from mailgate.domain.servers import ServerStatus
from mailgate.engines.config import ServerConfig
from mailgate.engines.oauth.tokens import token_source_for
from mailgate.engines.probe import Clock, OAuthTokenSource, probe
from mailgate.engines.probe_report import ProbeErrorCode, ProbeReport
from mailgate.errors import NotFound
from mailgate.net.dialer import Dialer
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import NetworkPolicy
from mailgate.services import audit_trail, auth, trust
from mailgate.services.context import Caller, Context
from mailgate.services.ratelimit import ProbeRateLimit, principal_key
from mailgate.services.server_config import server_config
from mailgate.services.servers import draft_server
from mailgate.storage import queue
from mailgate.storage.servers import ServerRepo

__all__ = [
    "AUDIT_ACTION",
    "INTERACTIVE_STEP_TIMEOUT",
    "DialerFactory",
    "Prober",
    "find_server",
    "operator_caller",
]

#: Longest wait for any one step of an interactive probe, in seconds. A server's own
#: ``timeout_seconds`` applies when it is shorter.
INTERACTIVE_STEP_TIMEOUT = 15.0
#: The audit action of a connection test.
AUDIT_ACTION = "mail_server.test"

#: Builds the dialer of one probe from the instance network policy.
DialerFactory = Callable[[NetworkPolicy], Dialer]

log = logging.getLogger("mailgate.probe")


def _guarded(policy: NetworkPolicy) -> Dialer:
    return GuardedDialer(policy)


def _oauth_tokens(dialer: Dialer) -> OAuthTokenSource:
    """Fetches a fresh access token for the probed settings through the probe's dialer."""

    async def fetch(config: ServerConfig) -> str:
        source = token_source_for(config, dialer=dialer)
        try:
            return (await source.access_token()).reveal()
        finally:
            await source.aclose()

    return fetch


class Prober:
    """Runs connection tests for callers; one per process (it holds the rate limits).

    ``dialer_factory`` receives the instance :class:`NetworkPolicy` and returns the dialer
    of one probe (the guarded dialer by default); ``limiter`` defaults to the documented
    limits; ``clock`` times the steps of the report; ``oauth_token`` fetches access tokens
    for ``auth: xoauth2`` (by default from the server's own OAuth settings, through the
    probe's dialer, so the network policy applies to the token endpoint too).
    """

    def __init__(
        self,
        *,
        limiter: ProbeRateLimit | None = None,
        dialer_factory: DialerFactory = _guarded,
        step_timeout: float = INTERACTIVE_STEP_TIMEOUT,
        clock: Clock = time.perf_counter,
        oauth_token: OAuthTokenSource | None = None,
    ) -> None:
        self.limiter = limiter or ProbeRateLimit()
        self.oauth_token = oauth_token
        self.dialer_factory = dialer_factory
        self.step_timeout = step_timeout
        self.clock = clock

    async def test_saved(self, ctx: Context, caller: Caller, server_id: str) -> ProbeReport:
        """Probe a stored server of the caller's tenant with its stored secrets.

        Raises ``NotFound`` (404) for an unknown server or one of another tenant, and
        ``RateLimited`` (429); every other outcome is in the report.
        """
        async with ctx.db.read() as tx:
            repo = ServerRepo(tx, ctx.box, caller.tenant_id)
            server = await repo.get(server_id)
            secrets = await repo.secrets(server.id)
        return await self._run(ctx, caller, server, secrets, saved=True)

    async def test_unsaved(
        self, ctx: Context, caller: Caller, fields: Mapping[str, Any]
    ) -> ProbeReport:
        """Probe settings that are not saved (the create body, plus optional ``server_id``).

        Raises ``ValidationFailed`` (422 naming the field) for settings that could not be
        saved, ``NotFound`` for an unknown ``server_id`` and ``RateLimited``; see
        :func:`~mailgate.services.servers.draft_server` for how stored secrets are reused.
        """
        server, secrets = await draft_server(ctx, caller, fields)
        return await self._run(ctx, caller, server, secrets, saved=False)

    async def _run(
        self,
        ctx: Context,
        caller: Caller,
        server: MailServer,
        secrets: Mapping[str, str],
        *,
        saved: bool,
    ) -> ProbeReport:
        self.limiter.acquire(principal=principal_key(caller.principal), tenant=caller.tenant_id)
        ca = await trust.trusted(ctx, caller.tenant_id, server.ca_keystore)
        config = server_config(server, secrets, trusted=ca)
        config = dataclasses.replace(
            config, timeout_seconds=min(config.timeout_seconds, self.step_timeout)
        )
        policy = NetworkPolicy(ctx.policy.allowed_networks, allow_port_25=ctx.policy.allow_port_25)
        dialer = self.dialer_factory(policy)
        started = self.clock()
        report = await probe(
            config,
            dialer=dialer,
            clock=self.clock,
            oauth_token=self.oauth_token or _oauth_tokens(dialer),
        )
        elapsed_ms = (self.clock() - started) * 1000
        await self._record(ctx, caller, server, report, saved=saved, elapsed_ms=elapsed_ms)
        return report

    async def _record(
        self,
        ctx: Context,
        caller: Caller,
        server: MailServer,
        report: ProbeReport,
        *,
        saved: bool,
        elapsed_ms: float,
    ) -> None:
        result = "ok" if report.error is None else report.error.code.value
        metrics.probed(result)
        stored_id = None if server.id == "unsaved" else server.id
        async with ctx.db.transaction() as tx:
            await audit_trail.record(
                tx,
                caller,
                AUDIT_ACTION,
                "mail_server",
                stored_id,
                server.name or None,
                [f"result:{result}", "saved" if saved else "unsaved"],
            )
            tested = tested_status(report)
            if saved and stored_id is not None and tested is not None:
                # A stored server's badge shows the last test of its stored settings.
                status, detail = tested
                await ServerRepo(tx, ctx.box, caller.tenant_id).set_status(
                    stored_id, status, detail
                )
                if status is ServerStatus.OK:
                    # Mail held after an authentication failure gets a new try, as after
                    # an edit: the stored settings have just been shown to work.
                    await queue.release_held(tx, stored_id)
        # Names, numbers and the error code only: never a credential, never a server reply.
        log.info(
            "%s tenant=%s server=%s host=%s port=%d security=%s actor=%s result=%s ms=%.1f",
            AUDIT_ACTION,
            caller.tenant.slug,
            stored_id or "unsaved",
            server.host or "-",
            server.port,
            server.security.value,
            caller.actor,
            result,
            elapsed_ms,
        )


#: Test failures that mean the credentials, not the connection, were refused.
_AUTH_CODES = frozenset(
    {
        ProbeErrorCode.AUTH_FAILED,
        ProbeErrorCode.AUTH_NOT_OFFERED,
        ProbeErrorCode.INSECURE_AUTH_REFUSED,
        ProbeErrorCode.PERMISSION_MISSING,
    }
)


def tested_status(report: ProbeReport) -> tuple[ServerStatus, str | None] | None:
    """The stored status a test of a saved server leaves: ok, auth_failed or unreachable;
    None when the engine has no connection test (the status is left as it is)."""
    if report.error is not None and report.error.code is ProbeErrorCode.ENGINE_NOT_SUPPORTED:
        return None
    if report.error is None:
        return ServerStatus.OK, None
    status = (
        ServerStatus.AUTH_FAILED if report.error.code in _AUTH_CODES else ServerStatus.UNREACHABLE
    )
    return status, f"Last test: {report.error.code.value}"


async def operator_caller(ctx: Context, tenant_slug: str, *, actor: str = "cli") -> Caller:
    """The instance operator at the command line, acting in ``tenant_slug`` (404 if none).

    The command line runs with the instance's own settings and keys, so it acts as the
    instance administrator; ``actor`` names it in the audit log.
    """
    principal = Principal(kind=PrincipalKind.INSTANCE_ADMIN, actor=actor)
    return await auth.authorize(ctx, principal, tenant_slug, Permission.MANAGE_EMAIL_CONFIGURATIONS)


async def find_server(ctx: Context, caller: Caller, reference: str) -> str:
    """The id of the caller's server whose id or name is ``reference``; ``NotFound`` if none.

    An id wins over a name, so a server named like another server's id stays reachable by id.
    """
    async with ctx.db.read() as tx:
        repo = ServerRepo(tx, ctx.box, caller.tenant_id)
        found = await repo.find(reference)
        if found is not None:
            return found.id
        by_name = await repo.find_by_name(reference)
    if by_name is None:
        raise NotFound(f"No mail server with the id or name {reference!r}.")
    return by_name
