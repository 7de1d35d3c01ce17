"""Google service-account credentials and the RS256 JWT of the JWT-bearer grant (RFC 7523).

The assertion is a JWS (RFC 7515, compact serialisation) signed with RSASSA-PKCS1-v1_5 and
SHA-256 ("RS256", RFC 7518 section 3.3) by the service account's private key. Its claims
follow RFC 7523 section 3 and Google's "Using OAuth 2.0 for Server to Server Applications"
(developers.google.com/identity/protocols/oauth2/service-account): ``iss`` is the account's
``client_email``, ``scope`` the requested scopes, ``aud`` the token endpoint, ``iat`` and
``exp`` at most one hour apart, and ``sub`` the user to act for with domain-wide delegation.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailgate.errors import ConfigurationError

__all__ = ["ASSERTION_LIFETIME", "ServiceAccount", "jwt_bearer_assertion"]

#: Google accepts assertions valid for at most one hour.
ASSERTION_LIFETIME = 3600


@dataclass(frozen=True, slots=True, repr=False)
class ServiceAccount:
    """The parts of a Google service-account JSON key that the grant needs."""

    client_email: str
    private_key: rsa.RSAPrivateKey
    key_id: str | None = None

    def __repr__(self) -> str:
        return f"ServiceAccount(client_email={self.client_email!r}, private_key=<hidden>)"

    @classmethod
    def from_json(cls, text: str) -> ServiceAccount:
        """Parse a service-account key file; raises :class:`ConfigurationError`.

        The key file's own ``token_uri`` is deliberately not used: the endpoint is Google's
        unless the server's ``oauth.token_url`` says otherwise. Error messages never quote
        the file.
        """
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigurationError("oauth.service_account_json is not valid JSON") from None
        if not isinstance(data, dict):
            raise ConfigurationError("oauth.service_account_json must be a JSON object")
        email = data.get("client_email")
        pem = data.get("private_key")
        if not isinstance(email, str) or not email:
            raise ConfigurationError("oauth.service_account_json has no client_email")
        if not isinstance(pem, str) or not pem:
            raise ConfigurationError("oauth.service_account_json has no private_key")
        try:
            key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
        except (ValueError, TypeError):
            raise ConfigurationError(
                "oauth.service_account_json: private_key is not a PEM private key"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError("oauth.service_account_json: private_key must be RSA")
        key_id = data.get("private_key_id")
        return cls(email, key, key_id if isinstance(key_id, str) and key_id else None)


def _b64url(data: bytes) -> str:
    # RFC 7515 section 2: base64url without padding.
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict[str, object]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def jwt_bearer_assertion(
    account: ServiceAccount,
    *,
    scope: str,
    audience: str,
    now: int,
    subject: str | None = None,
    lifetime: int = ASSERTION_LIFETIME,
) -> str:
    """The signed assertion for the ``urn:ietf:params:oauth:grant-type:jwt-bearer`` grant.

    ``now`` is the current POSIX time in seconds. The result is a credential: never log it.
    """
    header: dict[str, object] = {"alg": "RS256", "typ": "JWT"}
    if account.key_id:
        header["kid"] = account.key_id
    claims: dict[str, object] = {
        "iss": account.client_email,
        "scope": scope,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
    }
    if subject:
        claims["sub"] = subject
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode("ascii")
    signature = account.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode('ascii')}.{_b64url(signature)}"
