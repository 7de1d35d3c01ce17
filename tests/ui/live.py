"""A real Mailgate (uvicorn, UI mounted, one delivery worker) in a thread, and a gated proxy.

:class:`LiveServer` serves on 127.0.0.1 on a free port with its own event loop, SQLite file
and secret key; the network policy lets loopback through, so "Test connection" can reach a
local aiosmtpd. :class:`GatedProxy` forwards TCP connections to a port only once its gate is
open: a connection test through it stays in progress until the test opens the gate, which
makes the spinner observable without timing guesses. :func:`serving` starts one holding a
tenant and its owner, the start of every browser test module.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from mailgate.services.boot import open_context
from mailgate.settings import Settings
from mailgate.storage.secretbox import generate_key
from mailgate.web.app import create_app
from mailgate.web.ui import UiOptions, mount_ui
from mailgate.worker.pool import WorkerPool
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.support.smtp_servers import free_port
from tests.ui.conftest import PASSWORD


class LiveServer:
    def __init__(self, data_dir: Path, *, admin_token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._settings = Settings(
            database_url=f"sqlite+aiosqlite:///{data_dir / 'mailgate.db'}",
            data_dir=data_dir,
            secret_keys=[generate_key()],
            admin_token=admin_token,
            allowed_networks=["127.0.0.0/8"],
        )
        self._server: uvicorn.Server | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mailgate-live", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the live server did not start: {self._error!r}")

    def admin_api(self) -> httpx.Client:
        """A client of the REST API with the instance admin's token."""
        return httpx.Client(base_url=self.url, headers=ADMIN, timeout=10)

    def stop(self) -> None:
        if self._server is not None and self._loop is not None and self._stop is not None:
            self._server.should_exit = True
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        ctx = await open_context(self._settings, auto_upgrade=True)
        pool = WorkerPool(ctx, count=1)
        ctx.wake = pool.wake
        app = create_app(ctx)
        mount_ui(app, ctx, options=UiOptions(secure_cookies=False))
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
        )
        self._server = uvicorn.Server(config)
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        workers = asyncio.create_task(pool.run(self._stop))
        serving = asyncio.create_task(self._server.serve())
        try:
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.01)
            self._ready.set()
            await serving
        finally:
            self._stop.set()
            await workers
            await ctx.db.dispose()


@contextlib.contextmanager
def serving(
    data_dir: Path, *, tenants: Sequence[str] = ("acme",), owner: str | None = None
) -> Iterator[LiveServer]:
    """A started :class:`LiveServer` holding ``tenants`` (named after their slugs) and, when
    given, ``owner`` (password :data:`PASSWORD`) as the owner of the first; stopped on leaving."""
    server = LiveServer(data_dir, admin_token=ADMIN_TOKEN)
    server.start()
    try:
        with server.admin_api() as api:
            for slug in tenants:
                r = api.post("/api/v1/tenants", json={"slug": slug, "name": slug.title()})
                assert r.status_code == 201, r.text
            if owner is not None:
                r = api.post(
                    f"/api/v1/tenants/{tenants[0]}/users",
                    json={"email": owner, "password": PASSWORD, "role": "owner"},
                )
                assert r.status_code == 201, r.text
        yield server
    finally:
        server.stop()


def created(api: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` to ``path`` of the admin API; the created object (201 asserted)."""
    r = api.post(path, json=body)
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


def capture_with_account(api: httpx.Client, tenant: str, account: dict[str, Any]) -> str:
    """A default capture server for ``tenant`` and ``account`` sending through it; the
    server's id."""
    base = f"/api/v1/tenants/{tenant}"
    server = created(
        api, f"{base}/mail-servers", {"name": "Capture", "engine": "capture", "is_default": True}
    )
    created(api, f"{base}/email-accounts", {**account, "mail_server_id": server["id"]})
    return str(server["id"])


class GatedProxy:
    """Forwards each connection on :attr:`port` to ``upstream`` once :meth:`open` is called."""

    def __init__(self, upstream: int) -> None:
        self._upstream = upstream
        self._gate = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.accepted = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._spawn(self._accept)

    def open(self) -> None:
        self._gate.set()

    def close(self) -> None:
        self._closed = True
        self._gate.set()
        self._listener.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted.set()
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        self._gate.wait()
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            try:
                upstream = stack.enter_context(
                    socket.create_connection(("127.0.0.1", self._upstream))
                )
            except OSError:
                return
            done = threading.Event()
            self._spawn(self._pump, client, upstream, done)
            self._pump(upstream, client, done)
            done.wait(10)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket, done: threading.Event) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)
            done.set()
