"""Encryption at rest for every secret field.

AES-256-GCM with the row's identity (``table:id:column``) as associated data, so a ciphertext
copied to another row or column does not decrypt. Layout of a sealed value::

    b"MG1" | key id (8 bytes: SHA-256 of the key, truncated) | nonce (12) | ciphertext+tag

Keys are 32 random bytes, written as URL-safe base64. The first key seals; every key opens,
which is what makes rotation possible (``mailgate keys rotate``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mailgate.errors import ConfigurationError, SecretKeyError
from mailgate.storage.files import write_private_file

log = logging.getLogger(__name__)

_MAGIC = b"MG1"
_KEY_ID_LEN = 8
_NONCE_LEN = 12


def generate_key() -> str:
    """A new random key in its text form."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def _decode_key(text: str, *, index: int) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise ConfigurationError(
            f"Secret key #{index + 1} is not valid URL-safe base64; generate one with "
            "`mailgate keys generate`."
        ) from exc
    if len(raw) != 32:
        raise ConfigurationError(
            f"Secret key #{index + 1} must be 32 bytes (got {len(raw)}); generate one with "
            "`mailgate keys generate`."
        )
    return raw


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_KEY_ID_LEN]


class SecretBox:
    """Seals and opens secret values with a list of keys, newest first.

    With ``key_file`` the box follows the file while the process runs, which is what makes
    ``mailgate keys rotate`` safe with the API, workers and syncs running: before sealing it
    re-reads the file when it changed (a ``stat`` per seal; sealing is rare), so new
    secrets are sealed with the newest key; and a value sealed with a key it does not hold
    makes it re-read the file once before giving up.
    """

    def __init__(self, keys: Sequence[str], *, key_file: Path | None = None) -> None:
        self._key_file = key_file
        self._file_stamp = _stamp(key_file) if key_file is not None else None
        self._install(keys)

    def _install(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigurationError("No secret key configured (MAILGATE_SECRET_KEYS or key file).")
        raw = [_decode_key(k, index=i) for i, k in enumerate(keys)]
        self._primary = raw[0]
        self._primary_id = _key_id(raw[0])
        self._by_id = {_key_id(k): AESGCM(k) for k in raw}
        self._sealer = self._by_id[self._primary_id]

    def __repr__(self) -> str:
        return f"SecretBox(keys={len(self._by_id)})"

    def refresh(self) -> bool:
        """Re-read the key file if it changed since it was read; whether the keys changed.

        A file that cannot be read or holds no valid key leaves the keys as they were (and
        says so in the log): a half-written or mistyped file never takes keys away.
        """
        if self._key_file is None:
            return False
        stamp = _stamp(self._key_file)
        if stamp is None or stamp == self._file_stamp:
            return False
        try:
            keys = read_key_file(self._key_file)
            self._install(keys)
        except ConfigurationError as exc:
            log.warning("keeping the keys in use: the key file cannot be read (%s)", exc)
            return False
        self._file_stamp = stamp
        log.info("secret keys reloaded from %s (%d key(s))", self._key_file, len(keys))
        return True

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        """Encrypt ``plaintext`` bound to ``context`` with the newest key."""
        self.refresh()
        nonce = os.urandom(_NONCE_LEN)
        ct = self._sealer.encrypt(nonce, plaintext, context.encode("utf-8"))
        return _MAGIC + self._primary_id + nonce + ct

    def open(self, sealed: bytes, *, context: str) -> bytes:
        """Decrypt a value sealed for ``context``; a clear error when no key fits."""
        if not sealed.startswith(_MAGIC):
            raise SecretKeyError("A stored secret is not in a format Mailgate knows.")
        key_id = sealed[3 : 3 + _KEY_ID_LEN]
        nonce = sealed[3 + _KEY_ID_LEN : 3 + _KEY_ID_LEN + _NONCE_LEN]
        body = sealed[3 + _KEY_ID_LEN + _NONCE_LEN :]
        aead = self._by_id.get(key_id)
        if aead is None and self.refresh():
            aead = self._by_id.get(key_id)
        if aead is None:
            raise SecretKeyError(
                "A stored secret was sealed with a key that is not configured: restore the "
                "key file, or list the old key in MAILGATE_SECRET_KEYS (after the new one)."
            )
        try:
            return aead.decrypt(nonce, body, context.encode("utf-8"))
        except InvalidTag as exc:
            raise SecretKeyError(
                f"A stored secret ({context}) does not decrypt: the data or key is damaged."
            ) from exc

    def is_current(self, sealed: bytes) -> bool:
        """Whether ``sealed`` was made with the newest key."""
        return sealed[3 : 3 + _KEY_ID_LEN] == self._primary_id

    def seal_fields(self, values: Mapping[str, str], *, context: str) -> bytes | None:
        """Seal a small mapping of secret fields as one value (None when empty)."""
        clean = {k: v for k, v in values.items() if v}
        if not clean:
            return None
        return self.seal(json.dumps(clean, sort_keys=True).encode("utf-8"), context=context)

    def open_fields(self, sealed: bytes | None, *, context: str) -> dict[str, str]:
        """The mapping sealed by :meth:`seal_fields` (empty for None)."""
        if sealed is None:
            return {}
        data = json.loads(self.open(sealed, context=context))
        if not isinstance(data, dict):
            raise SecretKeyError(f"A stored secret ({context}) has an unexpected shape.")
        return {str(k): str(v) for k, v in data.items()}


def load_keys(*, env_keys: Sequence[str], key_file: Path, create: bool) -> list[str]:
    """The configured keys: from the environment, else the key file (created if allowed).

    The key file holds one key per line, newest first, and is created with mode 0600.
    """
    if env_keys:
        return list(env_keys)
    if key_file.exists():
        return read_key_file(key_file)
    if not create:
        raise ConfigurationError(
            f"No secret key: set MAILGATE_SECRET_KEYS or create {key_file} "
            "(`mailgate serve` creates it on first run)."
        )
    write_key_file(key_file, [generate_key()])
    return load_keys(env_keys=(), key_file=key_file, create=False)


def read_key_file(key_file: Path) -> list[str]:
    """The keys in ``key_file``, newest first; refused when others may read the file."""
    try:
        mode = key_file.stat().st_mode & 0o777
        text = key_file.read_text()
    except OSError as exc:
        raise ConfigurationError(f"The key file {key_file} cannot be read: {exc}.") from exc
    if mode & 0o077:
        raise ConfigurationError(
            f"The key file {key_file} is readable by others (mode {mode:o}); "
            f"run `chmod 600 {key_file}`."
        )
    keys = [line.strip() for line in text.splitlines() if line.strip()]
    if not keys:
        raise ConfigurationError(f"The key file {key_file} is empty.")
    for index, key in enumerate(keys):
        _decode_key(key, index=index)
    return keys


def _stamp(key_file: Path) -> tuple[int, int, int] | None:
    """What changes when the key file is replaced: inode, size, modification time."""
    try:
        st = key_file.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def write_key_file(key_file: Path, keys: Sequence[str]) -> None:
    """Write ``keys`` (newest first) to ``key_file`` atomically with mode 0600."""
    write_private_file(key_file, "\n".join(keys) + "\n")
