"""Files that hold mail or secrets: created private to the service's user.

The data dir is created 0700; the SQLite database, the key file and the demo token file are
created 0600 (SQLite gives its ``-wal`` and ``-shm`` files the database file's mode). A file
created here never exists, even for a moment, with wider permissions: the mode is given to
``open(2)``, not applied afterwards.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with mode 0700; an existing dir is left as is.

    A directory that already exists may be shared on purpose (``/var/lib`` layouts, a
    mounted volume): it is not changed, but one open to others is reported once.
    """
    if path.is_dir():
        mode = path.stat().st_mode & 0o777
        if mode & 0o007:
            log.warning(
                "the data directory %s is open to other users (mode %o); "
                "run `chmod 700 %s` unless that is intended",
                path,
                mode,
                path,
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask, which can only remove bits: 0700 stays private.
    path.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)


def ensure_private_file(path: Path) -> None:
    """Create an empty ``path`` with mode 0600 if it does not exist yet."""
    ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600 from the first byte."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, PRIVATE_FILE_MODE)  # O_CREAT kept an older tmp file's mode
    os.replace(tmp, path)
