"""Web UI options come from the instance settings (environment or mailgate.toml)."""

from __future__ import annotations

import pytest

from mailgate.settings import Settings
from mailgate.web.ui import UiOptions


@pytest.mark.parametrize(("value", "secure"), [("auto", None), ("true", True), ("false", False)])
def test_secure_cookies_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, secure: bool | None
) -> None:
    monkeypatch.setenv("MAILGATE_UI_SECURE_COOKIES", value)
    monkeypatch.setenv("MAILGATE_UI_SESSION_HOURS", "2.5")
    options = UiOptions.from_settings(Settings())
    assert options.secure_cookies is secure
    assert options.session_hours == 2.5


def test_nonsense_is_refused_with_the_setting_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILGATE_UI_SECURE_COOKIES", "sometimes")
    with pytest.raises(ValueError, match="ui_secure_cookies"):
        Settings()
