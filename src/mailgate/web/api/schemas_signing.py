"""Request and response bodies of DKIM keys, keystores and templates."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from mailgate.web.api.schemas import Strict

# DKIM keys, keystores and templates ------------------------------------------------------


class DkimKeyIn(Strict):
    domain: str = Field(max_length=253)
    selector: str = Field(max_length=63)
    bits: int | None = Field(None, description="RSA only: 2048 (default) to 4096.")
    algorithm: Literal["rsa", "ed25519"] = "rsa"


class DnsRecordOut(BaseModel):
    name: str
    type: Literal["TXT"] = "TXT"
    value: str
    strings: list[str] = Field(
        description="The value cut into TXT strings of at most 255 octets, for zone files."
    )


class DkimKeyOut(BaseModel):
    id: str
    domain: str
    selector: str
    algorithm: str
    bits: int | None
    dns_record: DnsRecordOut
    created_at: datetime


class KeystoreIn(Strict):
    name: str = Field(max_length=200)
    kind: Literal["pkcs12", "ca"] = "pkcs12"
    content: str = Field(max_length=1_000_000, description="The file, base64. Write-only.")
    password: str | None = Field(None, max_length=1000, description="Write-only.")


class KeystorePatch(Strict):
    """New content for a ``ca`` keystore; its name and kind stay."""

    content: str = Field(
        max_length=1_000_000, description="The PEM CA certificates, base64. Write-only."
    )


class KeystoreAliasOut(BaseModel):
    alias: str
    subject: str
    not_after: datetime | None


class KeystoreOut(BaseModel):
    id: str
    name: str
    kind: str
    aliases: list[KeystoreAliasOut]
    not_after: datetime | None
    created_at: datetime


class TemplateIn(Strict):
    subject: str = Field(description="Jinja source of the subject (sandboxed).")
    text: str | None = Field(None, description="Jinja source of the text part.")
    html: str | None = Field(None, description="Jinja source of the HTML part (autoescaped).")


class TemplateOut(BaseModel):
    name: str
    subject: str
    text: str | None
    html: str | None
    version: int
    created_at: datetime
    updated_at: datetime
