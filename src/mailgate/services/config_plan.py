"""Applying a configuration file: read the database, plan the changes, carry them out.

``apply`` is declarative and idempotent. For each tenant of the file, in this order:
tenant → stages → mail servers → (prune servers) → links (stages moving between servers,
fallbacks to servers created later) → email accounts → apps and test lists → prune stages.
Objects are matched by natural key (tenant slug, stage and server name, account address,
app name); what is missing is created, what differs is updated, the rest is reported
unchanged and never written. Every write goes through the services, so the same rules and
the same audit entries apply. A section left out of a tenant is left alone; objects of a
section that the file does not name are deleted only with ``prune``.

:func:`plan` is pure: it compares the parsed file with a :class:`TenantState` read
beforehand. :func:`apply` runs the steps and stops at the first error, reported at its path
in the file; the steps before it stay applied, and applying the fixed file again carries on.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Mapping
from typing import Any

from mailgate.domain.model import NO_STAGE, App, EmailAccount, MailServer
from mailgate.domain.roles import Permission
from mailgate.domain.server_deletion import NONE, REROUTE, Reassignment
from mailgate.domain.server_schema import changed_secret_bound
from mailgate.errors import RequestError
from mailgate.services import accounts as account_service
from mailgate.services import apps as app_service
from mailgate.services import servers as server_service
from mailgate.services import tenants as tenant_service
from mailgate.services.config_apps import AppSpec, stored_lists, wanted_lists
from mailgate.services.config_changes import Action, Change, Runner, apply
from mailgate.services.config_export import TenantState, imap_values, server_values
from mailgate.services.config_file import (
    OAUTH_KEYS,
    AccountSpec,
    ConfigFileError,
    Secret,
    ServerSpec,
    TenantSpec,
)
from mailgate.services.context import check_tenant_access
from mailgate.services.servers import SECRET_FIELDS as SERVER_SECRETS

__all__ = ["Action", "Change", "Runner", "apply", "plan"]

KEPT = "not in the file; kept (--prune deletes it)"


# Planning ------------------------------------------------------------------------------------


def plan(
    specs: Mapping[str, TenantSpec], states: Mapping[str, TenantState], *, prune: bool
) -> list[Change]:
    """Every change that applying ``specs`` makes, in order (the unchanged objects too)."""
    changes: list[Change] = []
    for slug, spec in specs.items():
        changes += _TenantPlan(spec, states[slug], prune=prune).changes()
    return changes


def _same(stored: str | None, secret: Secret) -> bool:
    return stored is not None and hmac.compare_digest(stored.encode(), secret.value.encode())


def _with_secrets(fields: dict[str, Any], secrets: Mapping[str, Secret]) -> dict[str, Any]:
    """``fields`` with the given secrets placed as the services take them."""
    for api_name, secret in secrets.items():
        outer, _, inner = api_name.rpartition(".")
        if outer:
            fields[outer] = {**(fields.get(outer) or {}), inner: secret.value}
        else:
            fields[inner] = secret.value
    return fields


class _TenantPlan:
    """The changes for one tenant, built section by section."""

    def __init__(self, spec: TenantSpec, state: TenantState, *, prune: bool) -> None:
        self.spec, self.state, self.prune, self.slug = spec, state, prune, spec.slug
        self.server_name = {s.id: s.name for s in state.servers}
        self.stored_servers = {s.name: s for s in state.servers}
        self._links: list[Change] = []

    def changes(self) -> list[Change]:
        return [
            *self.tenant(),
            *self.stages(),
            *self.servers(),
            *self.accounts(),
            *self.apps(),
            *self.pruned_servers(),
            *self.pruned_stages(),
        ]

    def _change(self, action: Action, kind: str, name: str, path: str, **kw: Any) -> Change:
        return Change(action, kind, self.slug, name, path, **kw)

    # Tenant and stages --------------------------------------------------------------------

    def tenant(self) -> list[Change]:
        spec, slug = self.spec, self.slug
        if self.state.caller is None:

            async def create(r: Runner) -> None:
                made = await tenant_service.create_tenant(
                    r.ctx, r.principal, slug=slug, name=spec.name
                )
                r.callers[slug] = check_tenant_access(
                    r.principal, made, Permission.MANAGE_EMAIL_CONFIGURATIONS
                )

            return [self._change(Action.CREATE, "tenant", slug, spec.path, step=create)]
        if self.state.caller.tenant.name == spec.name:
            return [self._change(Action.UNCHANGED, "tenant", slug, spec.path)]

        async def update(r: Runner) -> None:
            await tenant_service.update_tenant(r.ctx, r.callers[slug], name=spec.name)

        return [
            self._change(Action.UPDATE, "tenant", slug, spec.path, fields=("name",), step=update)
        ]

    def stages(self) -> list[Change]:
        have = {s.name for s in self.state.stages}
        out: list[Change] = []
        for i, name in enumerate(self.spec.stages or ()):
            path = f"{self.spec.path}.stages[{i}]"
            if name in have:
                out.append(self._change(Action.UNCHANGED, "stage", name, path))
                continue

            async def create(r: Runner, name: str = name) -> None:
                await tenant_service.create_stage(r.ctx, r.callers[self.slug], name)

            out.append(self._change(Action.CREATE, "stage", name, path, step=create))
        return out

    def pruned_stages(self) -> list[Change]:
        if self.spec.stages is None:
            return []
        out: list[Change] = []
        for stage in self.state.stages:
            if stage.name in self.spec.stages:
                continue
            path = f"{self.spec.path}.stages"
            if not self.prune:
                out.append(self._change(Action.UNCHANGED, "stage", stage.name, path, note=KEPT))
                continue

            async def delete(r: Runner, name: str = stage.name) -> None:
                await tenant_service.delete_stage(r.ctx, r.callers[self.slug], name)

            out.append(self._change(Action.DELETE, "stage", stage.name, path, step=delete))
        return out

    # Mail servers ---------------------------------------------------------------------------

    def _final_servers(self) -> set[str]:
        """The server names that exist once the servers section is applied."""
        if self.spec.servers is None:
            return set(self.stored_servers)
        if self.prune:
            return set(self.spec.servers)
        return set(self.spec.servers) | set(self.stored_servers)

    def _check_servers(self, specs: Mapping[str, ServerSpec]) -> None:
        known = {s.name for s in self.state.stages}
        if self.spec.stages is not None:
            known = set(self.spec.stages) if self.prune else known | set(self.spec.stages)
        holders = {s.name: self.server_name.get(s.mail_server_id or "") for s in self.state.stages}
        claimed: dict[str, str] = {}
        defaults = [s.name for s in specs.values() if s.values["is_default"]]
        if len(defaults) > 1:
            raise ConfigFileError(
                f"{specs[defaults[1]].path}.is_default",
                f"only one mail server can be the default; {defaults[0]!r} is too",
            )
        for spec in specs.values():
            for i, stage in enumerate(spec.stages):
                where = f"{spec.path}.stages[{i}]"
                if stage not in known:
                    raise ConfigFileError(
                        where, f"no stage named {stage!r}; add it to {self.spec.path}.stages"
                    )
                if stage in claimed:
                    raise ConfigFileError(
                        where,
                        f"stage {stage!r} is also listed on mail server {claimed[stage]!r}; "
                        "a stage has one mail server",
                    )
                claimed[stage] = spec.name
                holder = holders.get(stage)
                if holder and holder not in specs and not self.prune:
                    raise ConfigFileError(
                        where,
                        f"stage {stage!r} uses mail server {holder!r}, which is not in the "
                        "file; add that server to the file, or apply with --prune to delete it",
                    )
            if spec.fallback == spec.name:
                raise ConfigFileError(
                    f"{spec.path}.fallback_server", "a server cannot be its own fallback"
                )
            if spec.fallback is not None and spec.fallback not in self._final_servers():
                raise ConfigFileError(
                    f"{spec.path}.fallback_server", f"no mail server named {spec.fallback!r}"
                )

    def servers(self) -> list[Change]:
        specs = self.spec.servers
        if specs is None:
            return []
        self._check_servers(specs)
        holder = {s.name: self.server_name.get(s.mail_server_id or "") for s in self.state.stages}
        exists = set(self.stored_servers)
        out: list[Change] = []
        links: list[Change] = []
        # Non-default servers first: a default set last clears the old default itself.
        for spec in sorted(specs.values(), key=lambda s: s.values["is_default"]):
            now = [s for s in spec.stages if holder.get(s) in (None, spec.name)]
            for stage, name in holder.items():
                if name == spec.name and stage not in spec.stages:
                    holder[stage] = None
            holder.update(dict.fromkeys(now, spec.name))
            fallback_now = spec.fallback is None or spec.fallback in exists
            out.append(self._server(spec, now, fallback_now=fallback_now))
            exists.add(spec.name)
            if len(now) < len(spec.stages) or not fallback_now:
                links.append(self._link(spec, late_stages=len(now) < len(spec.stages)))
        self._links = links
        return out

    def pruned_servers(self) -> list[Change]:
        """Servers the file no longer lists, deleted after the accounts moved as the file
        says, then the stages and fallbacks that had to wait for them."""
        specs = self.spec.servers
        if specs is None:
            return []
        out: list[Change] = []
        for server in sorted(self.stored_servers.values(), key=lambda s: s.name):
            if server.name in specs:
                continue
            path = f"{self.spec.path}.mail_servers"
            if not self.prune:
                out.append(
                    self._change(Action.UNCHANGED, "mail server", server.name, path, note=KEPT)
                )
                continue

            async def delete(r: Runner, server_id: str = server.id) -> None:
                # The file's own routing decides: a stage no server in the file lists is
                # left without one, and waiting mail is routed again; accounts still on the
                # server or its default flag are refused (409) until the file moves them.
                plan = Reassignment(stages_to=NONE, mail_to=REROUTE)
                await server_service.delete_server(r.ctx, r.callers[self.slug], server_id, plan)

            out.append(self._change(Action.DELETE, "mail server", server.name, path, step=delete))
        return out + self._links

    def _server(self, spec: ServerSpec, now: list[str], *, fallback_now: bool) -> Change:
        slug, stored = self.slug, self.stored_servers.get(spec.name)
        if stored is None:

            async def create(r: Runner) -> None:
                fields: dict[str, Any] = {"name": spec.name, "stages": now}
                fields |= {k: v for k, v in spec.values.items() if v is not None}
                if spec.fallback and fallback_now:
                    fields["fallback_server_id"] = r.server_ids[(slug, spec.fallback)]
                _with_secrets(fields, spec.secrets)
                made = await _run_server(
                    spec, now, server_service.create_server(r.ctx, r.callers[slug], fields)
                )
                r.server_ids[(slug, spec.name)] = made.id

            return self._change(Action.CREATE, "mail server", spec.name, spec.path, step=create)
        old = server_values(stored)
        changed = [k for k, v in spec.values.items() if v != old[k]]
        api = list(changed)
        if "provider" in changed:  # a new preset fills what is not given: give it all
            api += [k for k in ("engine", "host", "port", "security") if k not in api]
        report = list(changed)
        stages_change = set(now) != set(stored.stages)
        if stages_change:
            report.append("stages")
        old_fallback = self.server_name.get(stored.fallback_server_id or "")
        fallback = spec.fallback if fallback_now else old_fallback
        if fallback != old_fallback:
            report.append("fallback_server")
        kept = self.state.server_secrets.get(stored.id, {})
        secrets = {
            api_name: secret
            for api_name, secret in spec.secrets.items()
            if not _same(kept.get(SERVER_SECRETS[api_name]), secret)
        }
        report += sorted(secrets)
        if changed_secret_bound(old, spec.values):
            secrets = dict(spec.secrets)  # the services ask for the secret again
        if not report:
            return self._change(Action.UNCHANGED, "mail server", spec.name, spec.path)

        async def update(r: Runner) -> None:
            fields = {k: spec.values[k] for k in api}
            if fields.get("oauth") is not None:  # unset keys clear what the update merges
                fields["oauth"] = {k: fields["oauth"].get(k) for k in OAUTH_KEYS}
            if stages_change:
                fields["stages"] = now
            if fallback != old_fallback:
                fields["fallback_server_id"] = r.server_ids[(slug, fallback)] if fallback else None
            _with_secrets(fields, secrets)
            await _run_server(
                spec,
                now,
                server_service.update_server(r.ctx, r.callers[slug], stored.id, fields),
            )

        return self._change(
            Action.UPDATE, "mail server", spec.name, spec.path, fields=tuple(report), step=update
        )

    def _link(self, spec: ServerSpec, *, late_stages: bool) -> Change:
        """The stages and fallback a server gets once the others have been applied."""
        slug = self.slug
        report = (("stages",) if late_stages else ()) + (
            ("fallback_server",) if spec.fallback else ()
        )

        async def link(r: Runner) -> None:
            fields: dict[str, Any] = {"stages": list(spec.stages)} if late_stages else {}
            if spec.fallback:
                fields["fallback_server_id"] = r.server_ids[(slug, spec.fallback)]
            server_id = r.server_ids[(slug, spec.name)]
            await _run_server(
                spec,
                list(spec.stages),
                server_service.update_server(r.ctx, r.callers[slug], server_id, fields),
            )

        return self._change(
            Action.UPDATE,
            "mail server",
            spec.name,
            spec.path,
            fields=report,
            note="links set once the other servers are applied",
            step=link,
        )

    # Email accounts ------------------------------------------------------------------------

    def accounts(self) -> list[Change]:
        specs = self.spec.accounts
        if specs is None:
            return []
        servers = self._final_servers()
        defaults = [a for a in specs.values() if a.is_default]
        if len(defaults) > 1:
            raise ConfigFileError(
                f"{defaults[1].path}.is_default",
                f"only one email account can be the default; {defaults[0].address!r} is too",
            )
        stored = {a.address.lower(): a for a in self.state.accounts}
        out: list[Change] = []
        for spec in sorted(specs.values(), key=lambda a: a.is_default):
            if spec.mail_server is not None and spec.mail_server not in servers:
                raise ConfigFileError(
                    f"{spec.path}.mail_server", f"no mail server named {spec.mail_server!r}"
                )
            out.append(self._account(spec, stored.get(spec.address.lower())))
        created = any(c.action is Action.CREATE for c in out)
        for account in sorted(self.state.accounts, key=lambda a: a.address):
            if account.address.lower() in {a.lower() for a in specs}:
                continue
            path = f"{self.spec.path}.email_accounts"
            if not self.prune:
                note = KEPT
                if created:
                    note += "; an address cannot change: a changed address is a new account"
                out.append(
                    self._change(
                        Action.UNCHANGED, "email account", account.address, path, note=note
                    )
                )
                continue

            async def delete(r: Runner, account_id: str = account.id) -> None:
                await account_service.delete_account(r.ctx, r.callers[self.slug], account_id)

            out.append(
                self._change(Action.DELETE, "email account", account.address, path, step=delete)
            )
        return out

    def _account(self, spec: AccountSpec, stored: EmailAccount | None) -> Change:
        slug, kind = self.slug, "email account"
        imap = None if spec.imap is None else dict(spec.imap)
        if imap is not None and spec.imap_password is not None:
            imap["password"] = spec.imap_password.value
        if imap is not None and imap.get("oauth") is not None:
            imap["oauth"] = dict(imap["oauth"])
            for api_name, secret in spec.imap_secrets.items():
                imap["oauth"][api_name.removeprefix("oauth.")] = secret.value
        if stored is None:
            if spec.mail_server is None:
                raise ConfigFileError(f"{spec.path}.mail_server", "is required for a new account")
            server = spec.mail_server

            async def create(r: Runner) -> None:
                fields = {
                    "address": spec.address,
                    "display_name": spec.display_name,
                    "description": spec.description,
                    "reply_to": spec.reply_to,
                    "mail_server_id": r.server_ids[(slug, server)],
                    "is_default": spec.is_default,
                    "imap": imap,
                }
                await account_service.create_account(r.ctx, r.callers[slug], fields)

            return self._change(Action.CREATE, kind, spec.address, spec.path, step=create)
        old_server = self.server_name.get(stored.mail_server_id or "")
        report = [
            name
            for name, new, old in (
                ("display_name", spec.display_name, stored.display_name),
                ("description", spec.description, stored.description),
                ("reply_to", spec.reply_to, stored.reply_to),
                ("is_default", spec.is_default, stored.is_default),
                ("imap", spec.imap, imap_values(stored)),
            )
            if new != old
        ]
        if spec.mail_server is not None and spec.mail_server != old_server:
            report.append("mail_server")
        kept_secrets = self.state.account_secrets.get(stored.id, {})
        kept = kept_secrets.get("imap_password")
        if spec.imap_password is not None and not _same(kept, spec.imap_password):
            report.append("imap.password")
        for api_name, secret in spec.imap_secrets.items():
            stored_name = "imap_" + api_name.replace(".", "_")
            if not _same(kept_secrets.get(stored_name), secret):
                report.append(f"imap.{api_name}")
        if not report:
            return self._change(Action.UNCHANGED, kind, spec.address, spec.path)

        async def update(r: Runner) -> None:
            fields: dict[str, Any] = {
                "display_name": spec.display_name,
                "description": spec.description,
                "reply_to": spec.reply_to,
                "is_default": spec.is_default,
            }
            fields = {k: v for k, v in fields.items() if k in report}
            if any(name == "imap" or name.startswith("imap.") for name in report):
                fields["imap"] = imap
            if "mail_server" in report:
                fields["mail_server_id"] = r.server_ids[(slug, str(spec.mail_server))]
            await account_service.update_account(r.ctx, r.callers[slug], stored.id, fields)

        return self._change(
            Action.UPDATE, kind, spec.address, spec.path, fields=tuple(report), step=update
        )

    # Apps -----------------------------------------------------------------------------------

    def apps(self) -> list[Change]:
        specs = self.spec.apps
        if specs is None:
            return []
        stored = {a.name: a for a in self.state.apps}
        out = [self._app(spec, stored.get(spec.name)) for spec in specs.values()]
        for app in sorted(self.state.apps, key=lambda a: a.name):
            if app.name in specs:
                continue
            path = f"{self.spec.path}.apps"
            if not self.prune:
                out.append(self._change(Action.UNCHANGED, "app", app.name, path, note=KEPT))
                continue

            async def delete(r: Runner, name: str = app.name) -> None:
                await app_service.delete_app(r.ctx, r.callers[self.slug], name)

            out.append(self._change(Action.DELETE, "app", app.name, path, step=delete))
        return out

    def _app(self, spec: AppSpec, stored: App | None) -> Change:
        slug = self.slug
        stages = [*(self.spec.stages or ()), *(s.name for s in self.state.stages)]
        wanted = wanted_lists(spec, stages, self.state.users)

        async def set_lists(r: Runner) -> None:
            await app_service.replace_test_lists(r.ctx, r.callers[slug], spec.name, wanted)

        if stored is None:

            async def create(r: Runner) -> None:
                await app_service.create_app(r.ctx, r.callers[slug], spec.name)
                if wanted:
                    await set_lists(r)

            return self._change(Action.CREATE, "app", spec.name, spec.path, step=create)
        have = stored_lists(stored)
        if wanted == have:
            return self._change(Action.UNCHANGED, "app", spec.name, spec.path)
        changed = sorted(
            "test_list" if k == NO_STAGE else f"test_lists.{k}"
            for k in {*wanted, *have}
            if wanted.get(k) != have.get(k)
        )
        return self._change(
            Action.UPDATE, "app", spec.name, spec.path, fields=tuple(changed), step=set_lists
        )


async def _run_server(
    spec: ServerSpec, passed: list[str], call: Awaitable[MailServer]
) -> MailServer:
    """Await a server write; an error about ``stages[k]`` names the stage's place in the file."""
    try:
        return await call
    except RequestError as exc:
        match = re.fullmatch(r"stages\[(\d+)\]", exc.errors[0].field) if exc.errors else None
        if match is None or int(match[1]) >= len(passed):
            raise
        index = spec.stages.index(passed[int(match[1])])
        raise ConfigFileError(f"{spec.path}.stages[{index}]", exc.errors[0].message) from None
