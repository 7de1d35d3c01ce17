"""Instance settings, read once at the edges (CLI, web app factory) and passed down as values.

Every setting comes from a ``MAILGATE_*`` environment variable or from ``mailgate.toml`` in
the working directory (or the file named by ``MAILGATE_CONFIG``); the environment wins.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """The instance settings of one Mailgate deployment."""

    model_config = SettingsConfigDict(
        env_prefix="MAILGATE_",
        extra="ignore",
        frozen=True,
        toml_file=os.environ.get("MAILGATE_CONFIG", "mailgate.toml"),
    )

    data_dir: Path = Field(Path("var"), description="SQLite database, key file and spool.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file in the data dir."
    )
    secret_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated secret-box keys, newest first; default: the key file.",
    )
    admin_token: SecretStr | None = Field(None, description="Instance-admin bearer token.")
    host: str = Field("127.0.0.1", description="HTTP listen address.")
    port: int = Field(8025, ge=0, le=65535, description="HTTP listen port.")
    smtp_port: int = Field(2525, ge=0, le=65535, description="SMTP submission port; 0 disables.")
    smtp_tls_cert: Path | None = Field(
        None,
        description="PEM certificate (chain) for SMTP submission; with the key, STARTTLS is "
        "offered and AUTH waits for it.",
    )
    smtp_tls_key: Path | None = Field(
        None, description="PEM private key of `smtp_tls_cert` for SMTP submission."
    )
    smtp_allow_insecure_auth: bool = Field(
        False,
        description="Allow SMTP submission AUTH without TLS on a non-loopback listener "
        "(e.g. behind a TLS-terminating proxy). Tokens then cross the network in clear.",
    )
    ui_secure_cookies: Literal["auto", "true", "false"] = Field(
        "auto",
        description="Mark web UI cookies Secure: always, never, or when the request came over "
        "HTTPS (behind a proxy, run with forwarded headers).",
    )
    ui_session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="How long a web UI sign-in lasts."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or CIDRs of reverse proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto headers are believed; empty (the default): "
        "no proxy is trusted, loopback included, and the client is the TCP peer.",
    )
    max_request_bytes: int | None = Field(
        None,
        ge=1024,
        description="Largest HTTP request body accepted (413 above it); default: one message "
        "of max_message_bytes in JSON (base64) plus 1 MiB.",
    )
    smtp_max_connections: int = Field(
        256,
        ge=1,
        description="Open SMTP submission connections allowed at once; more are answered "
        "421 and closed.",
    )
    smtp_max_connections_per_client: int = Field(
        16,
        ge=1,
        description="Open SMTP submission connections allowed at once from one client address.",
    )
    allow_port_25: bool = Field(False, description="Allow mail servers on port 25.")
    allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs and host:port entries the network policy lets through.",
    )
    workers: int = Field(1, ge=0, description="Delivery worker tasks in `serve` (0 = API only).")
    worker_processes: int | None = Field(
        None,
        ge=0,
        description=(
            "Worker processes `serve` starts beside itself (default: one per core beyond the "
            "first, none when MAILGATE_WORKERS is 0; 0 = none)."
        ),
    )
    api_processes: int = Field(
        1,
        ge=1,
        description=(
            "HTTP API processes of `serve`, itself included, sharing its port (more than one "
            "helps where one API process is busy all the time and the database has room)."
        ),
    )
    expect_workers: int | None = Field(
        None,
        ge=0,
        description="Delivery worker processes (`mailgate worker`, `serve` with workers) that "
        "must be alive for /readyz to answer 200; default: 503 only when mail has been due for "
        "30 s and none is alive; 0 = never check.",
    )
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    log_level: str = Field("INFO", description="Root log level.")
    max_recipients: int = Field(100, ge=1, description="Recipients allowed on one message.")
    max_message_bytes: int = Field(
        25 * 1024 * 1024, ge=1024, description="Body plus attachments allowed on one message."
    )
    give_up_hours: float = Field(72.0, gt=0, description="Age after which delivery gives up.")
    retention_days: float = Field(
        30.0, gt=0, description="Sent mail and mail ingested from IMAP inboxes kept this long."
    )
    lease_seconds: float = Field(120.0, gt=0, description="How long a claimed message is held.")
    imap_sync_interval: float = Field(
        300.0,
        ge=0,
        description="Seconds between background syncs of each email account's IMAP inbox "
        "(an account's imap.sync_interval_minutes overrides it); 0 disables the scheduler.",
    )
    dns_resolver: str | None = Field(
        None,
        description="IP address (optionally :port, [v6]:port) of the DNS resolver the "
        "sending-domain checks ask; default: the system's resolvers.",
    )

    @field_validator("dns_resolver")
    @classmethod
    def _resolver(cls, value: str | None) -> str | None:
        if not value:
            return None
        host = value.strip()
        if host.startswith("[") and "]" in host:
            host = host[1 : host.index("]")]
        elif host.count(":") == 1:
            host, _, port = host.partition(":")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("the port must be a number from 1 to 65535")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError("must be an IP address, optionally with :port") from None
        return value.strip()

    @field_validator("secret_keys", "allowed_networks", "trusted_proxies", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def effective_database_url(self) -> str:
        """The configured database URL, or the SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'mailgate.db').as_posix()}"

    @property
    def key_file(self) -> Path:
        """Where the generated secret-box key lives when no keys come from the environment."""
        return self.data_dir / "secret.key"
