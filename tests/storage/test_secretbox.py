"""The secret box: row-bound AES-GCM, key files, rotation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailgate.errors import ConfigurationError, SecretKeyError
from mailgate.storage.secretbox import SecretBox, generate_key, load_keys, write_key_file


def test_round_trip_and_binding_to_the_row() -> None:
    box = SecretBox([generate_key()])
    sealed = box.seal(b"hunter2", context="mail_servers:a:secrets")
    assert b"hunter2" not in sealed
    assert box.open(sealed, context="mail_servers:a:secrets") == b"hunter2"
    with pytest.raises(SecretKeyError, match="does not decrypt"):
        box.open(sealed, context="mail_servers:b:secrets")


def test_each_seal_differs() -> None:
    box = SecretBox([generate_key()])
    assert box.seal(b"x", context="c") != box.seal(b"x", context="c")


def test_unknown_key_gives_actionable_error() -> None:
    sealed = SecretBox([generate_key()]).seal(b"x", context="c")
    with pytest.raises(SecretKeyError, match="MAILGATE_SECRET_KEYS"):
        SecretBox([generate_key()]).open(sealed, context="c")


def test_old_keys_open_new_key_seals() -> None:
    old, new = generate_key(), generate_key()
    sealed_old = SecretBox([old]).seal(b"x", context="c")
    rotated = SecretBox([new, old])
    assert rotated.open(sealed_old, context="c") == b"x"
    assert not rotated.is_current(sealed_old)
    assert rotated.is_current(rotated.seal(b"x", context="c"))


@pytest.mark.parametrize("bad", ["not base64!!", "c2hvcnQ=", ""])
def test_bad_keys_are_configuration_errors(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        SecretBox([bad])


def test_key_file_created_0600(tmp_path: Path) -> None:
    key_file = tmp_path / "var" / "secret.key"
    keys = load_keys(env_keys=(), key_file=key_file, create=True)
    assert len(keys) == 1
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert load_keys(env_keys=(), key_file=key_file, create=False) == keys


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    write_key_file(key_file, [generate_key()])
    os.chmod(key_file, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_keys(env_keys=(), key_file=key_file, create=False)


def test_missing_key_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MAILGATE_SECRET_KEYS"):
        load_keys(env_keys=(), key_file=tmp_path / "none.key", create=False)


def test_secret_fields_mapping() -> None:
    box = SecretBox([generate_key()])
    assert box.seal_fields({"password": ""}, context="c") is None
    sealed = box.seal_fields({"password": "p", "api_key": "k"}, context="c")
    assert box.open_fields(sealed, context="c") == {"password": "p", "api_key": "k"}
    assert box.open_fields(None, context="c") == {}
