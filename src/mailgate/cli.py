"""The ``mailgate`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress

from mailgate import logs
from mailgate.cli_config import config_app
from mailgate.cli_doctor import doctor
from mailgate.cli_server import server_app
from mailgate.errors import ConfigurationError
from mailgate.services import boot
from mailgate.services.context import Context
from mailgate.settings import Settings
from mailgate.storage import migrate
from mailgate.storage.db import Database
from mailgate.storage.secretbox import generate_key
from mailgate.worker.supervisor import CONFIGURATION_ERROR, supervise, worker_command

if TYPE_CHECKING:
    from mailgate.services.demo import Demo

app = typer.Typer(
    help="Mailgate: a self-hosted, multi-tenant outbound email gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
admin_app = typer.Typer(help="Instance administration.", no_args_is_help=True)
keys_app = typer.Typer(help="Secret-box keys (encryption at rest).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(keys_app, name="keys")
app.add_typer(server_app, name="server")
app.add_typer(config_app, name="config")
app.command("doctor")(doctor)

console = Console(stderr=True)
T = TypeVar("T")


def _run(coro: Awaitable[T], *, fast_loop: bool = False) -> T:
    """Run a coroutine; configuration errors end the process with their message, not a trace.

    With ``fast_loop`` (the long-running ``serve`` and ``worker``) the event loop is uvloop's
    when it is installed (``pip install 'mailgate[fast]'``), else asyncio's own.
    """
    try:
        if fast_loop:
            return _run_fast(coro)
        return asyncio.run(coro)  # type: ignore[arg-type]
    except ConfigurationError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(CONFIGURATION_ERROR) from None


def _settings() -> Settings:
    try:
        settings = Settings()
    except Exception as exc:
        console.print(f"[bold red]error:[/] invalid settings: {exc}")
        raise typer.Exit(CONFIGURATION_ERROR) from None
    logs.configure(fmt=settings.log_format, level=settings.log_level)
    return settings


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the schema this Mailgate needs."""
    settings = _settings()

    async def go() -> str | None:
        db = Database(settings.effective_database_url)
        try:
            await migrate.upgrade(db)
            return await migrate.current_revision(db)
        finally:
            await db.dispose()

    revision = _run(go())
    console.print(f"database at schema {revision}")


@admin_app.command("create-token")
def admin_create_token(
    name: Annotated[str, typer.Option(help="A label for the token.")] = "admin",
) -> None:
    """Create an instance-admin API token and print it (shown only once)."""
    from mailgate.services import auth

    settings = _settings()

    async def go() -> str:
        ctx = await boot.open_context(settings, auto_upgrade=True, create_key=True)
        try:
            return await auth.create_admin_token(ctx, name)
        finally:
            await ctx.db.dispose()

    typer.echo(_run(go()))


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new random key (for MAILGATE_SECRET_KEYS)."""
    typer.echo(generate_key())


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new key and re-encrypt every stored secret with it; no restart needed.

    With a key file, the new key is written first in the file (running processes pick it
    up), every secret is re-encrypted, and then the old keys are removed. With
    MAILGATE_SECRET_KEYS, put the new key first yourself (`mailgate keys generate`) and
    restart, run this, then drop the old keys.
    """
    from mailgate.services import keys as key_service

    settings = _settings()
    env_keys = [k.get_secret_value() for k in settings.secret_keys]

    async def go() -> key_service.RotationResult:
        db = Database(settings.effective_database_url)
        try:
            with Progress(console=console, transient=False) as progress:
                task = progress.add_task("re-encrypting secrets", total=None)

                def step(name: str, todo: int) -> None:
                    if name == "add":
                        progress.update(task, description="new key added; processes pick it up")
                    elif name == "reseal":
                        progress.update(
                            task, description="re-encrypting secrets", total=todo, completed=0
                        )
                    elif name == "drop":
                        progress.update(task, description="old keys removed")

                result = await key_service.rotate(
                    db,
                    key_file=None if env_keys else settings.key_file,
                    env_keys=env_keys,
                    progress=lambda n: progress.advance(task, n),
                    on_step=step,
                )
                progress.update(task, total=1, completed=1)
            return result
        finally:
            await db.dispose()

    result = _run(go())
    console.print(f"re-encrypted {result.resealed} secret value(s) with the new key")
    if env_keys:
        console.print("now remove the old keys from MAILGATE_SECRET_KEYS and restart")
    elif not result.old_keys_dropped:
        console.print(
            "[yellow]some secrets were still being sealed with an old key; the old keys stay "
            "in the key file. Run `mailgate keys rotate` again.[/]"
        )


#: The youngest generation's threshold for the long-running processes (Python's default is
#: 700 allocations): their steady work allocates and frees many short-lived objects, nearly
#: all reclaimed by reference counting, so collecting that often only costs time.
GC_THRESHOLD = (10_000, 20, 20)


def _settle() -> None:
    """Called once a long-running process has started (modules imported, context and app
    built): those objects live as long as the process, so the collector stops looking at
    them (``gc.freeze``), and it runs less often (:data:`GC_THRESHOLD`). Without this a
    delivery worker spent about a tenth of its time collecting, mostly in full collections
    over the modules' objects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _run_fast(coro: Awaitable[T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


def serve_worker_processes(configured: int | None, *, workers: int) -> int:
    """How many worker processes ``serve`` starts beside itself: ``configured``
    (``MAILGATE_WORKER_PROCESSES``, also with no workers in ``serve`` itself), else one per
    core beyond the first, which the API and its own workers use; by default none when
    ``serve`` runs no workers of its own (``MAILGATE_WORKERS=0``: the API alone)."""
    if configured is not None:
        return configured
    if workers == 0:
        return 0
    return max(0, (os.cpu_count() or 1) - 1)


def _start_worker_processes(processes: int, stop: asyncio.Event) -> asyncio.Task[int] | None:
    if processes == 0:
        return None
    console.print(f"mailgate serve: {processes} worker process(es) beside the API")
    return asyncio.create_task(supervise(worker_command(1), processes=processes, stop=stop))


def _start_api_processes(
    processes: int, listening: socket.socket, stop: asyncio.Event
) -> asyncio.Task[int] | None:
    """``processes`` more HTTP API processes accepting on ``listening`` (the kernel hands
    each new connection to one of the processes waiting on it)."""
    if processes == 0:
        return None
    fd = listening.fileno()
    command = [sys.executable, "-m", "mailgate", "api-process", "--fd", str(fd)]
    return asyncio.create_task(
        supervise(command, processes=processes, stop=stop, pass_fds=(fd,), kind="API")
    )


def _listening_socket(host: str, port: int) -> socket.socket:
    """The HTTP port, opened before anything else runs (a busy port stops ``serve`` with its
    message) and shared by every API process."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listening = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another "
            "MAILGATE_HOST or MAILGATE_PORT, or stop what uses it"
        ) from None
    listening.set_inheritable(True)
    return listening


def _url(listening: socket.socket) -> str:
    host, port = listening.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _http_server(ctx: Context, settings: Settings) -> Any:
    """uvicorn serving the REST API and web UI over ``ctx``, with Mailgate's own signal
    handling (see :class:`_QuietServer`)."""
    import uvicorn

    from mailgate.web.app import create_app
    from mailgate.web.guard import RequestLimits
    from mailgate.web.serving import proxy_options
    from mailgate.web.ui import UiOptions

    app = create_app(
        ctx, ui=UiOptions.from_settings(settings), limits=RequestLimits.from_settings(settings)
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        **proxy_options(settings),
    )
    return _QuietServer(config)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (MAILGATE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (MAILGATE_PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Delivery workers in this process (MAILGATE_WORKERS).")
    ] = None,
    with_demo: Annotated[
        bool, typer.Option("--demo", help="Create the demo tenant on the capture server.")
    ] = False,
) -> None:
    """Run the API and web UI, the SMTP submission listener and the delivery workers."""
    from mailgate.services import demo
    from mailgate.services.demo import DEMO_TOKEN_FILE
    from mailgate.submission import start_submission
    from mailgate.worker.pool import WorkerPool

    settings = _settings()
    listen_host = host or settings.host
    listen_port = port if port is not None else settings.port
    count = settings.workers if workers is None else workers
    children = serve_worker_processes(settings.worker_processes, workers=count)
    apis = settings.api_processes

    async def go() -> None:
        # Opened first: a busy port stops `serve` with its message before anything else runs.
        with _listening_socket(listen_host, listen_port) as listening:
            ctx: Context = await boot.open_context(settings, auto_upgrade=True, create_key=True)
            pool = WorkerPool(ctx, count=count)
            ctx.wake = pool.wake
            stop = asyncio.Event()
            try:
                if with_demo:
                    token_file = settings.data_dir / DEMO_TOKEN_FILE
                    found = await demo.ensure_demo(ctx, token_file=token_file)
                    _print_demo(found, listen_host, listen_port)
                server = _http_server(
                    ctx, settings.model_copy(update={"host": listen_host, "port": listen_port})
                )
                processes = f" in {apis} processes" if apis > 1 else ""
                console.print(f"mailgate serve: API on {_url(listening)}{processes}")

                def shutdown() -> None:
                    server.should_exit = True
                    stop.set()

                _on_signals(shutdown)
                # Started before the workers: a bad certificate or a busy submission port
                # stops `serve` with its message before anything else runs.
                submission = await start_submission(
                    ctx, settings.model_copy(update={"host": listen_host})
                )
                workers_task = asyncio.create_task(pool.run(stop))
                # Started after the database was opened (and upgraded) above.
                processes_task = _start_worker_processes(children, stop)
                api_task = _start_api_processes(apis - 1, listening, stop)
                _settle()
                try:
                    await server.serve(sockets=[listening])
                finally:
                    stop.set()
                    if submission is not None:
                        await submission.stop()
                    await workers_task
                    for task in (processes_task, api_task):
                        if task is not None:
                            await task
            finally:
                await ctx.db.dispose()

    _run(go(), fast_loop=True)


@app.command("api-process", hidden=True)
def api_process(
    fd: Annotated[int, typer.Option("--fd", help="The listening socket, opened by serve.")],
) -> None:
    """One of ``serve``'s extra HTTP API processes: the REST API and web UI, accepting on the
    port ``serve`` opened. It delivers nothing (the workers find the mail it accepts by
    polling, or on PostgreSQL by notification)."""
    settings = _settings()

    async def go() -> None:
        with socket.socket(fileno=fd) as listening:
            ctx = await boot.open_context(settings)
            try:
                server = _http_server(ctx, settings)

                def shutdown() -> None:
                    server.should_exit = True

                _on_signals(shutdown)
                _settle()
                await server.serve(sockets=[listening])
            finally:
                await ctx.db.dispose()

    _run(go(), fast_loop=True)


@app.command()
def worker(
    count: Annotated[int, typer.Option("--count", "-n", help="Worker tasks per process.")] = 1,
    processes: Annotated[
        int,
        typer.Option(
            "--processes", "-p", min=1, help="Worker processes (one per core is a good start)."
        ),
    ] = 1,
) -> None:
    """Run delivery workers only (any number of processes and hosts on PostgreSQL)."""
    from mailgate.worker.pool import WorkerPool

    settings = _settings()
    if processes > 1:

        async def supervised() -> int:
            stop = asyncio.Event()
            _on_signals(stop.set)
            console.print(f"mailgate worker: {processes} processes of {count} task(s)")
            return await supervise(worker_command(count), processes=processes, stop=stop)

        raise typer.Exit(_run(supervised()))

    async def go() -> None:
        ctx = await boot.open_context(settings)
        stop = asyncio.Event()
        _on_signals(stop.set)
        console.print(f"mailgate worker: {count} task(s) on {ctx.db.safe_url}")
        try:
            pool = WorkerPool(ctx, count=count)
            _settle()
            await pool.run(stop)
        finally:
            await ctx.db.dispose()

    _run(go(), fast_loop=True)


queue_app = typer.Typer(help="The delivery queue.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")


@queue_app.command("status")
def queue_status(
    watch: Annotated[
        bool, typer.Option("--watch", help="Follow until nothing is queued or sending.")
    ] = False,
) -> None:
    """Counts by status over every tenant; with --watch, a progress bar while mail drains."""
    from rich.table import Table

    from mailgate.services import messages as message_service

    settings = _settings()

    async def go() -> dict[str, int]:
        ctx = await boot.open_context(settings)
        try:
            counts = await message_service.instance_stats(ctx)
            if not watch:
                return counts
            pending = counts["queued"] + counts["sending"] + counts["deferred"]
            with Progress(console=console) as progress:
                task = progress.add_task("delivering", total=max(pending, 1))
                while True:
                    counts = await message_service.instance_stats(ctx)
                    left = counts["queued"] + counts["sending"]
                    progress.update(task, completed=max(pending - left - counts["deferred"], 0))
                    if left == 0:
                        return counts
                    await asyncio.sleep(0.5)
        finally:
            await ctx.db.dispose()

    counts = _run(go())
    table = Table(title="Mailgate queue")
    table.add_column("status")
    table.add_column("messages", justify="right")
    for status, count in counts.items():
        table.add_row(status, f"{count:,}")
    Console().print(table)


@app.command()
def send(
    tenant: Annotated[str, typer.Argument(help="Tenant slug.")],
    to: Annotated[list[str], typer.Option("--to", help="Recipient (repeat for more).")],
    subject: Annotated[str, typer.Option(help="Subject.")],
    text: Annotated[str, typer.Option(help="Plain-text body.")],
    sender: Annotated[
        str | None, typer.Option("--from", help="Sender account (default: tenant default).")
    ] = None,
    stage: Annotated[str | None, typer.Option(help="Stage to route by.")] = None,
) -> None:
    """Queue one message as the instance admin (handy for checking a setup)."""
    from mailgate.domain.roles import Permission, Principal, PrincipalKind
    from mailgate.errors import RequestError
    from mailgate.services import auth
    from mailgate.services import send as send_service

    settings = _settings()

    async def go() -> dict[str, Any]:
        ctx = await boot.open_context(settings)
        try:
            admin = Principal(kind=PrincipalKind.INSTANCE_ADMIN, actor="cli")
            caller = await auth.authorize(ctx, admin, tenant, Permission.SEND_EMAIL)
            item: dict[str, Any] = {"to": to, "subject": subject, "text": text}
            if sender:
                item["from"] = sender
            if stage:
                item["stage"] = stage
            outcome = await send_service.send_one(ctx, caller, item, idempotency_key=None)
            return dict(outcome.body)
        finally:
            await ctx.db.dispose()

    try:
        body = _run(go())
    except RequestError as exc:
        console.print(f"[bold red]error:[/] {exc.detail}")
        raise typer.Exit(1) from None
    typer.echo(json.dumps(body))


def _on_signals(callback: Callable[[], object]) -> None:
    """Stop gracefully on SIGTERM and SIGINT: finish or release in-flight mail first."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, callback)


class _QuietServer:
    """uvicorn's server without its own signal handling (Mailgate stops it gracefully)."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return Server(config)


def _print_demo(found: Demo, host: str, port: int) -> None:
    base = f"http://{host}:{port}"
    body = json.dumps(
        {"to": ["someone@example.test"], "subject": "Hello from Mailgate", "text": "It works."}
    )
    console.print(f"\n[bold]Mailgate[/] on {base}  (API docs: {base}/docs)")
    console.print(f"instance admin token (also the web UI sign-in at {base}/login):")
    console.print(f"  {found.admin_token}")
    console.print(f"demo tenant [bold]{found.tenant}[/], owner token:\n  {found.token}")
    console.print("send a message:")
    console.print(
        f"  curl -s -X POST {base}/api/v1/tenants/{found.tenant}/messages "
        f"-H 'Authorization: Bearer {found.token}' -H 'Content-Type: application/json' "
        f"-d '{body}'\n",
        soft_wrap=True,
    )


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive use
        sys.exit(130)
