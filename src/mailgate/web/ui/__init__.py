"""The server-rendered web admin UI (SPEC.md section 7): Jinja2 pages over the services.

:func:`mount_ui` adds the pages (``/login``, ``/tenants``, ``/t/{tenant}/settings``, …) and
their static files (``/static/ui``) to an application made by
:func:`mailgate.web.app.create_app`. Pages call the services directly, as the API routes do,
with the same tenant and permission checks. See ``docs/web-ui.md``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from mailgate.services.context import Context
from mailgate.web.ui import (
    accounts,
    apps,
    audit,
    captured,
    logs,
    members,
    servers,
    signin,
    signing,
    suppressions,
    webhooks,
)
from mailgate.web.ui.pages import STATIC_DIR, LoginLimits, Ui, make_environment
from mailgate.web.ui.session import SessionCodec, UiOptions

__all__ = ["UiOptions", "mount_ui"]

STATIC_PATH = "/static/ui"


def mount_ui(app: FastAPI, ctx: Context, *, options: UiOptions | None = None) -> None:
    """Serve the web UI from ``app`` over ``ctx``.

    ``options`` come from the instance settings (:meth:`UiOptions.from_settings`); the
    defaults are secure cookies over HTTPS and 12-hour sessions.
    """
    chosen = options or UiOptions()
    env = make_environment()
    env.globals["static"] = STATIC_PATH
    app.state.mailgate_ui = Ui(
        ctx=ctx,
        options=chosen,
        codec=SessionCodec(ctx, chosen),
        env=env,
        login_limits=LoginLimits(chosen),
    )
    for router in (
        signin.router,
        servers.router,
        accounts.router,
        apps.router,
        logs.router,
        captured.router,
        suppressions.router,
        audit.router,
        members.router,
        webhooks.router,
        signing.router,
    ):
        app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="ui-static")
