"""A real `mailgate serve` process for end-to-end tests (loopback, free ports)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.smtp_servers import free_port


@dataclass(frozen=True)
class Served:
    url: str
    data_dir: Path
    log_file: Path
    env: dict[str, str]

    @property
    def output(self) -> str:
        return self.log_file.read_text()


def mailgate_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a Mailgate process: none of the caller's MAILGATE_ settings, a
    data dir of its own and a free SMTP submission port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    return env | {
        "MAILGATE_DATA_DIR": str(data_dir),
        "MAILGATE_SMTP_PORT": str(free_port()),
        **extra,
    }


@contextmanager
def serve(workdir: Path, *args: str, env: Mapping[str, str] | None = None) -> Iterator[Served]:
    """Run `mailgate serve ARGS` in ``workdir`` until it answers /healthz (60 s at most);
    stop it on exit."""
    port = free_port()
    full_env = dict(env) if env is not None else mailgate_env(workdir / "var")
    log_file = workdir / "serve.log"
    log = log_file.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailgate", "serve", *args, "--port", str(port)],
        cwd=workdir,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                pytest.fail(log_file.read_text())
            time.sleep(0.2)
        else:
            pytest.fail("mailgate serve did not answer /healthz within 60 s")
        yield Served(url, Path(full_env["MAILGATE_DATA_DIR"]), log_file, full_env)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
