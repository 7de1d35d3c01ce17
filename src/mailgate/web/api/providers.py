"""Provider presets: host, port and security of well-known mail services."""

from __future__ import annotations

from fastapi import APIRouter, Query

from mailgate.domain.providers import Provider, list_providers, resolve_email
from mailgate.errors import NotFound
from mailgate.web.api.schemas import ProviderOut
from mailgate.web.deps import PrincipalDep

router = APIRouter(prefix="/api/v1/providers", tags=["providers"])


def _out(p: Provider) -> ProviderOut:
    return ProviderOut(
        key=p.key,
        name=p.name,
        engine=p.engine.value,
        host=p.host,
        port=p.port,
        security=p.security.value,
        auth=p.auth.value,
    )


@router.get("")
async def providers(_: PrincipalDep) -> list[ProviderOut]:
    return [_out(p) for p in list_providers()]


@router.get("/resolve")
async def resolve(_: PrincipalDep, email: str = Query(max_length=320)) -> ProviderOut:
    """The preset for an address's domain (``a@gmail.com`` → Gmail), or 404."""
    found = resolve_email(email)
    if found is None:
        raise NotFound(f"No preset for the domain of {email!r}; enter host and port yourself.")
    return _out(found)
