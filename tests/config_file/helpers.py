"""Applying documents in-process, as `mailgate config apply` does; running the command."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mailgate.domain.roles import Permission, Principal, PrincipalKind
from mailgate.services import tenants
from mailgate.services.auth import authorize
from mailgate.services.config_export import read_state
from mailgate.services.config_file import parse
from mailgate.services.config_plan import Action, Change, apply, plan
from mailgate.services.context import Context

CLI = Principal(kind=PrincipalKind.INSTANCE_ADMIN, actor="cli:config")
CANARY = "canary-Secr3t-7f1c2d9e"
ENV = {
    "MAILGATE_SECRET_ACME_RELAY_PASSWORD": CANARY,
    "MAILGATE_SECRET_ACME_BACKUP_API_KEY": "SG.backup-" + CANARY,
    "MAILGATE_SECRET_ACME_IMAP": "imap-" + CANARY,
}


def run_mailgate(args: list[str], workdir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m mailgate *args`` in ``workdir`` (data under ``var``), without the
    ``MAILGATE_`` variables of this process: only ``env``'s."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    full |= {"MAILGATE_DATA_DIR": str(workdir / "var"), "COLUMNS": "200", **env}
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args],
        env=full,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


DOC: dict[str, Any] = {
    "version": 1,
    "tenants": {
        "acme": {
            "name": "Acme Corp",
            "stages": ["development", "test", "production", "staging"],
            "mail_servers": {
                "relay": {
                    "host": "smtp.acme.example",
                    "port": 587,
                    "security": "starttls",
                    "auth": "password",
                    "username": "mailer@acme.example",
                    "password": {"env": "MAILGATE_SECRET_ACME_RELAY_PASSWORD"},
                    "stages": ["production"],
                    "is_default": True,
                    "fallback_server": "backup",
                    "max_connections": 8,
                    "rate_limit_per_minute": 600,
                    "timeout_seconds": 20,
                    "options": {"ehlo_name": "mx.acme.example"},
                },
                "backup": {
                    "engine": "sendgrid",
                    "api_key": {"env": "MAILGATE_SECRET_ACME_BACKUP_API_KEY"},
                    "api_base_url": "http://127.0.0.1:9/v3",
                    "stages": ["staging"],
                },
                "capture": {"engine": "capture", "stages": ["development", "test"]},
            },
            "email_accounts": {
                "noreply@acme.example": {
                    "display_name": "Acme",
                    "reply_to": "support@acme.example",
                    "mail_server": "relay",
                    "is_default": True,
                    "imap": {
                        "host": "imap.acme.example",
                        "username": "noreply@acme.example",
                        "password": {"env": "MAILGATE_SECRET_ACME_IMAP"},
                        "sync_interval_minutes": 5,
                    },
                },
                "alerts@acme.example": {"display_name": "Alerts", "mail_server": "capture"},
            },
            "apps": {
                "billing": {"test_list": {"addresses": ["qa@acme.example"], "active": True}},
                "portal": {},
            },
        }
    },
}


def doc() -> dict[str, Any]:
    return copy.deepcopy(DOC)


async def apply_doc(
    ctx: Context,
    document: dict[str, Any],
    *,
    env: dict[str, str] | None = None,
    prune: bool = False,
    dry_run: bool = False,
    base_dir: Path = Path("."),
) -> list[Change]:
    specs = parse(document, environ=ENV if env is None else env, base_dir=base_dir)
    states = {
        slug: await read_state(ctx, CLI, slug, secrets=True, missing_ok=True) for slug in specs
    }
    changes = plan(specs, states, prune=prune)
    if not dry_run:
        await apply(ctx, CLI, changes, states)
    return changes


def actions(changes: list[Change]) -> dict[tuple[str, str], str]:
    return {(c.kind, c.name): c.action.value for c in changes}


def written(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.action is not Action.UNCHANGED]


async def audit_rows(ctx: Context, slug: str = "acme") -> list[Any]:
    caller = await authorize(ctx, CLI, slug, Permission.MANAGE_TENANT)
    return await tenants.list_audit(ctx, caller, limit=1000, cursor=None)
