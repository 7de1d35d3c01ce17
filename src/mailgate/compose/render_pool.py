"""Rendering templates under a time and memory budget, in child processes that can be killed.

The sandbox (:mod:`mailgate.compose.templates`) refuses private names and huge powers and
repetitions, but it cannot bound the work of a template: nested ``range(20000)`` loops run
for seconds, and a thread running them cannot be stopped. So every render of a send request
runs in a child process: :class:`RenderPool` keeps up to ``size`` warm children (forked
from a clean ``forkserver`` process, never from the threaded server), hands each render to
an idle one over a pipe and waits at most ``seconds``. A child that does not answer in time
is killed and replaced, and the render is a :class:`~mailgate.errors.ValidationFailed` (422)
naming the part being rendered (``template.subject``, ``template.text`` or
``template.html``). Each child runs with an address-space limit of ``memory_bytes``, so a
template that builds a huge value fails with a 422 instead of exhausting the host's memory.
The other errors of :func:`~mailgate.compose.templates.render_template` (a missing variable,
output over the size limit …) come back as the same exceptions, fields and texts.

:meth:`RenderPool.render` blocks its caller until the child answers: call it from a thread,
never on the event loop. Renders are not retried, and the children's compiled-template
caches stay warm between requests.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import resource
import threading
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final

from mailgate.compose.templates import RenderedTemplate, TemplateSource, render_template
from mailgate.errors import FieldError, TooLarge, ValidationFailed

#: Wall-clock budget of one render (all parts together), in seconds.
RENDER_SECONDS: Final = 2.0
#: Address-space limit of a render child, in bytes.
RENDER_MEMORY_BYTES: Final = 1024 * 1024 * 1024
#: Children kept per process (renders beyond this many at once wait for one).
RENDER_CHILDREN: Final = 2

_ERRORS: Final[dict[str, type[ValidationFailed]]] = {
    "ValidationFailed": ValidationFailed,
    "TooLarge": TooLarge,
}


def _serve(conn: Connection, memory_bytes: int) -> None:
    """A render child: answer requests on ``conn`` until it is closed."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    while True:
        try:
            subject, text, html, variables, name = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(_render_one(conn, TemplateSource(subject, text, html), variables, name))


def _render_one(
    conn: Connection, source: TemplateSource, variables: Mapping[str, object], name: str
) -> tuple[Any, ...]:
    def progress(part: str) -> None:
        conn.send(("part", part))

    try:
        rendered = render_template(source, variables, name=name, on_part=progress)
    except ValidationFailed as exc:
        errors = [(e.field, e.message) for e in exc.errors]
        return ("error", type(exc).__name__, exc.detail, errors)
    except MemoryError:
        return ("budget", f"template {name!r} needs more memory than a render may use")
    except RecursionError:
        return ("budget", f"template {name!r} nests its macros or loops too deeply")
    except Exception as exc:  # the template's own doing: never a crash of the child
        return ("budget", f"template {name!r} failed: {type(exc).__name__}")
    return ("ok", rendered.subject, rendered.text, rendered.html)


class _Child:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn

    def kill(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()
        self.process.join(5)
        self.conn.close()
        with contextlib.suppress(ValueError):
            self.process.close()


class RenderPool:
    """Warm render children; see the module docstring. Safe to share between threads."""

    def __init__(
        self,
        *,
        size: int = RENDER_CHILDREN,
        seconds: float = RENDER_SECONDS,
        memory_bytes: int = RENDER_MEMORY_BYTES,
    ) -> None:
        self.size = max(1, size)
        self.seconds = seconds
        self.memory_bytes = memory_bytes
        self._idle: queue.SimpleQueue[_Child] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._children = 0
        self._mp = multiprocessing.get_context("forkserver")
        self._mp.set_forkserver_preload(["mailgate.compose.render_pool"])

    def _spawn(self) -> _Child:
        parent, child = self._mp.Pipe()
        process = self._mp.Process(
            target=_serve, args=(child, self.memory_bytes), name="mailgate-render", daemon=True
        )
        process.start()
        child.close()
        return _Child(process, parent)

    def _acquire(self) -> _Child:
        with contextlib.suppress(queue.Empty):
            return self._idle.get_nowait()
        with self._lock:
            spawn = self._children < self.size
            if spawn:
                self._children += 1
        if spawn:
            try:
                return self._spawn()
            except BaseException:
                with self._lock:
                    self._children -= 1
                raise
        return self._idle.get()

    def _discard(self, child: _Child) -> None:
        child.kill()
        with self._lock:
            self._children -= 1

    def render(
        self, source: TemplateSource, variables: Mapping[str, object], *, name: str
    ) -> RenderedTemplate:
        """The rendered parts of ``source``, as :func:`render_template` renders them, or a
        422 when the render is over its time or memory budget."""
        child = self._acquire()
        part = "subject"
        try:
            child.conn.send((source.subject, source.text, source.html, dict(variables), name))
            deadline = time.monotonic() + self.seconds
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not child.conn.poll(left):
                    raise ValidationFailed.field(
                        f"template.{part}",
                        f"template {name!r} did not render within {self.seconds:g} s "
                        "(loops or macros that do too much work)",
                    )
                answer = child.conn.recv()
                if answer[0] != "part":
                    break
                part = answer[1]
        except ValidationFailed:
            self._discard(child)
            raise
        except (EOFError, OSError) as exc:
            self._discard(child)
            raise ValidationFailed.field(
                f"template.{part}", f"template {name!r} stopped its renderer while rendering"
            ) from exc
        except BaseException:
            self._discard(child)
            raise
        if answer[0] == "budget":
            # A child that ran out of memory or recursion depth is not trusted again.
            self._discard(child)
        else:
            self._idle.put(child)
        return _result(answer, part)

    def close(self) -> None:
        """Stop the idle children (busy ones are stopped when their render ends)."""
        while True:
            try:
                child = self._idle.get_nowait()
            except queue.Empty:
                return
            self._discard(child)


def _result(answer: tuple[Any, ...], part: str) -> RenderedTemplate:
    kind = answer[0]
    if kind == "ok":
        return RenderedTemplate(subject=answer[1], text=answer[2], html=answer[3])
    if kind == "error":
        cls = _ERRORS.get(answer[1], ValidationFailed)
        raise cls(answer[2], errors=[FieldError(field, message) for field, message in answer[3]])
    raise ValidationFailed.field(f"template.{part}", str(answer[1]))


_DEFAULT: RenderPool | None = None
_DEFAULT_LOCK = threading.Lock()


def default_pool() -> RenderPool:
    """The process's shared pool, created on first use."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = RenderPool()
        return _DEFAULT
