"""A Mailgate API on 127.0.0.1 for fuzzing: its own thread and event loop, a SQLite file,
one tenant (``acme``) with a capture server, a default account, an app and an owner token.

While it runs, the process may only connect to loopback addresses and resolve only loopback
names (:class:`LoopbackOnly`): whatever host a generated request names (a mail server to test,
a webhook URL, an IMAP inbox), no packet leaves the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from mailgate.services.boot import open_context
from mailgate.settings import Settings
from mailgate.storage.secretbox import generate_key
from mailgate.web.app import create_app

TENANT = "acme"


def _is_loopback(host: object) -> bool:
    if host in ("localhost", b"localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class LoopbackOnly:
    """Refuse every connection and name lookup that is not loopback, in this process."""

    def __init__(self) -> None:
        self._connect = socket.socket.connect
        self._connect_ex = socket.socket.connect_ex
        self._getaddrinfo = socket.getaddrinfo

    def _address_ok(self, sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True
        return isinstance(address, tuple) and _is_loopback(address[0])

    def __enter__(self) -> LoopbackOnly:
        guard = self
        connect, connect_ex, getaddrinfo = self._connect, self._connect_ex, self._getaddrinfo

        def checked_connect(sock: socket.socket, address: Any) -> None:
            if not guard._address_ok(sock, address):
                raise ConnectionRefusedError(f"fuzzing: no connection to {address!r}")
            connect(sock, address)

        def checked_connect_ex(sock: socket.socket, address: Any) -> int:
            if not guard._address_ok(sock, address):
                raise ConnectionRefusedError(f"fuzzing: no connection to {address!r}")
            return connect_ex(sock, address)

        def checked_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host is not None and not _is_loopback(host):
                raise socket.gaierror(socket.EAI_NONAME, "fuzzing: only loopback names resolve")
            return getaddrinfo(host, *args, **kwargs)

        socket.socket.connect = checked_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = checked_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = checked_getaddrinfo
        return self

    def __exit__(self, *exc: object) -> None:
        socket.socket.connect = self._connect  # type: ignore[method-assign]
        socket.socket.connect_ex = self._connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = self._getaddrinfo


@dataclass(frozen=True)
class FuzzTarget:
    base_url: str
    admin: dict[str, str]
    owner: dict[str, str]
    #: Path parameter values naming objects that exist (``server_id``, ``message_id``, ...).
    known: dict[str, str]

    def path_value(self, path: str, name: str) -> str | None:
        """The value naming an existing object for ``{name}`` in ``path``, if there is one."""
        if name == "tenant":
            return TENANT
        if name == "name":
            return "billing" if "/apps/" in path else "invite" if "/templates/" in path else None
        return self.known.get(name)


def _serve(settings: Settings, sock: socket.socket, state: dict[str, Any]) -> None:
    async def main() -> None:
        ctx = await open_context(settings, auto_upgrade=True)
        try:
            config = uvicorn.Config(create_app(ctx), log_level="warning", lifespan="off")
            server = uvicorn.Server(config)
            state["server"] = server
            await server.serve(sockets=[sock])
        finally:
            await ctx.db.dispose()

    asyncio.run(main())


def _populate(base_url: str, admin: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The tenant with one object of each kind the paths name, and an owner token.

    Returns the owner's header and the path parameters that name those objects, so that
    generated requests reach past the 404 of an unknown id.
    """
    t = f"/api/v1/tenants/{TENANT}"
    known: dict[str, str] = {}
    with httpx.Client(base_url=base_url, headers=admin, timeout=30) as client:

        def made(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = client.post(f"{t}/{path}", json=body)
            assert r.status_code in (200, 201, 202), r.text
            return dict(r.json())

        client.post("/api/v1/tenants", json={"slug": TENANT, "name": "Acme"}).raise_for_status()
        known["server_id"] = made("mail-servers", {"name": "Capture", "engine": "capture"})["id"]
        known["account_id"] = made(
            "email-accounts",
            {
                "address": "noreply@acme.example",
                "display_name": "Acme",
                "mail_server_id": known["server_id"],
                "is_default": True,
            },
        )["id"]
        made("apps", {"name": "billing"})
        client.put(
            f"{t}/templates/invite", json={"subject": "Hi {{ name }}", "text": "Hello."}
        ).raise_for_status()
        known["message_id"] = made(
            "messages", {"to": ["a@example.com"], "subject": "Hi", "text": "Hello."}
        )["id"]
        known["user_id"] = made(
            "users",
            {"email": "ann@acme.example", "password": "a long passphrase 1", "role": "viewer"},
        )["id"]
        known["key_id"] = made(
            "dkim-keys", {"domain": "acme.example", "selector": "s1", "algorithm": "ed25519"}
        )["id"]
        webhook = client.post(
            f"{t}/webhooks",
            json={"url": "https://hooks.acme.example/mail", "events": ["message.sent"]},
        )
        if webhook.status_code == 201:
            known["webhook_id"] = webhook.json()["id"]
        token = made("tokens", {"name": "fuzz", "role": "owner"})
        return {"Authorization": f"Bearer {token['token']}"}, known


@contextmanager
def fuzz_target(data_dir: Path) -> Iterator[FuzzTarget]:
    """Serve the API on a free loopback port until the block ends."""
    admin_token = "mg_fuzz_admin_" + secrets.token_hex(8)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{data_dir / 'mailgate.db'}",
        data_dir=data_dir,
        secret_keys=[generate_key()],
        admin_token=admin_token,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    state: dict[str, Any] = {}
    with LoopbackOnly():
        thread = threading.Thread(target=_serve, args=(settings, sock, state), daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while True:
                server = state.get("server")
                if server is not None and server.started:
                    break
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the fuzzing API did not start")
                time.sleep(0.05)
            admin = {"Authorization": f"Bearer {admin_token}"}
            owner, known = _populate(base_url, admin)
            yield FuzzTarget(base_url, admin, owner, known)
        finally:
            server = state.get("server")
            if server is not None:
                server.should_exit = True
            thread.join(timeout=30)
            sock.close()
