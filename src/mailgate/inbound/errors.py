"""Why a sync could not read an inbox: an error code, a message and a hint a person can act on.

Foreign exceptions met while talking IMAP (``ssl``, ``socket``, ``imaplib``/``imapclient``,
the network policy's refusal) are translated here, once, by :func:`translate`. Messages
quote server replies and library reasons only; the password is scrubbed from every text
even so, in case a server echoes it.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
from enum import StrEnum

from mailgate.domain.inbound import ImapAuth, ImapSecurity, ImapTarget
from mailgate.errors import MailgateError, PolicyViolation

# X509_V_ERR_* codes from OpenSSL's x509_vfy.h, as reported in SSLCertVerificationError.
_X509_EXPIRED = 10
_X509_NAME_MISMATCH = frozenset({62, 64})  # host name, IP address
# OpenSSL reasons meaning "the peer did not answer with TLS at all" (a plain IMAP greeting
# read as a TLS record header).
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"}
)


class SyncErrorCode(StrEnum):
    NO_INBOX = "no_inbox"
    NO_PASSWORD = "no_password"  # noqa: S105 - an error code, not a password
    NO_OAUTH = "no_oauth"
    OAUTH_REFUSED = "oauth_refused"
    TOKEN_UNAVAILABLE = "token_unavailable"  # noqa: S105 - an error code, not a token
    POLICY_REFUSED = "policy_refused"
    DNS_FAILED = "dns_failed"
    CONNECT_FAILED = "connect_failed"
    TIMEOUT = "timeout"
    NOT_TLS = "not_tls"
    TLS_FAILED = "tls_failed"
    CERTIFICATE_EXPIRED = "certificate_expired"
    CERTIFICATE_HOSTNAME_MISMATCH = "certificate_hostname_mismatch"
    CERTIFICATE_UNTRUSTED = "certificate_untrusted"
    STARTTLS_UNSUPPORTED = "starttls_unsupported"
    AUTH_FAILED = "auth_failed"
    MAILBOX_NOT_FOUND = "mailbox_not_found"
    CONNECTION_LOST = "connection_lost"
    PROTOCOL_ERROR = "protocol_error"


class Step(StrEnum):
    """Where in a sync something went wrong (it decides what an IMAP ``NO`` means)."""

    TOKEN = "token"  # noqa: S105 - a step name: fetching the OAuth access token
    CONNECT = "connect"
    TLS = "tls"
    GREETING = "greeting"
    STARTTLS = "starttls"
    LOGIN = "login"
    SELECT = "select"
    FETCH = "fetch"


#: The field of the account's ``imap`` settings that each failure points at.
FIELD_FOR_CODE: dict[SyncErrorCode, str] = {
    SyncErrorCode.NO_INBOX: "imap",
    SyncErrorCode.NO_PASSWORD: "imap.password",
    SyncErrorCode.NO_OAUTH: "imap.oauth",
    SyncErrorCode.OAUTH_REFUSED: "imap.oauth",
    SyncErrorCode.TOKEN_UNAVAILABLE: "imap.oauth.token_url",
    SyncErrorCode.POLICY_REFUSED: "imap.host",
    SyncErrorCode.DNS_FAILED: "imap.host",
    SyncErrorCode.CONNECT_FAILED: "imap.port",
    SyncErrorCode.TIMEOUT: "imap.host",
    SyncErrorCode.NOT_TLS: "imap.security",
    SyncErrorCode.TLS_FAILED: "imap.security",
    SyncErrorCode.CERTIFICATE_EXPIRED: "imap.host",
    SyncErrorCode.CERTIFICATE_HOSTNAME_MISMATCH: "imap.host",
    SyncErrorCode.CERTIFICATE_UNTRUSTED: "imap.host",
    SyncErrorCode.STARTTLS_UNSUPPORTED: "imap.security",
    SyncErrorCode.AUTH_FAILED: "imap.password",
    SyncErrorCode.MAILBOX_NOT_FOUND: "imap.folder",
    SyncErrorCode.CONNECTION_LOST: "imap.host",
    SyncErrorCode.PROTOCOL_ERROR: "imap.host",
}


def hint_for(code: SyncErrorCode, target: ImapTarget | None) -> str:
    """What a person can do about ``code`` for ``target``."""
    host = target.host if target else "the IMAP server"
    port = target.port if target else 993
    hints = {
        SyncErrorCode.NO_INBOX: "Set the account's imap settings (host, username, password).",
        SyncErrorCode.NO_PASSWORD: "Set imap.password on the account (it is write-only).",
        SyncErrorCode.NO_OAUTH: (
            "Set imap.oauth on the account: provider google with service_account_json, or "
            "provider microsoft with tenant_id, client_id and client_secret."
        ),
        SyncErrorCode.OAUTH_REFUSED: (
            "The OAuth provider refused the credentials: check imap.oauth (client id and "
            "secret, tenant, or the service account and its domain-wide delegation)."
        ),
        SyncErrorCode.TOKEN_UNAVAILABLE: (
            "No access token could be fetched now; check that the token endpoint is "
            "reachable (and allowed by the network policy), then try again."
        ),
        SyncErrorCode.POLICY_REFUSED: (
            f"{host} is on a network Mailgate may not reach; an operator can allow it with "
            "MAILGATE_ALLOWED_NETWORKS (a CIDR or host:port)."
        ),
        SyncErrorCode.DNS_FAILED: f"Check imap.host: {host!r} does not resolve.",
        SyncErrorCode.CONNECT_FAILED: (
            f"Nothing accepted the connection on {host}:{port}; check imap.host and imap.port "
            "(993 for tls, 143 for starttls) and any firewall in between."
        ),
        SyncErrorCode.TIMEOUT: (
            f"{host}:{port} did not answer in time; check imap.host, imap.port and firewalls."
        ),
        SyncErrorCode.NOT_TLS: (
            f"Port {port} answered without TLS; choose security starttls (usually port 143) "
            "or the server's implicit-TLS port (usually 993)."
        ),
        SyncErrorCode.TLS_FAILED: (
            "The TLS handshake failed; check imap.security and that the server supports "
            "TLS 1.2 or newer."
        ),
        SyncErrorCode.CERTIFICATE_EXPIRED: "The server's certificate has expired; renew it.",
        SyncErrorCode.CERTIFICATE_HOSTNAME_MISMATCH: (
            f"The certificate is not valid for {host!r}; set imap.host to a name the "
            "certificate lists."
        ),
        SyncErrorCode.CERTIFICATE_UNTRUSTED: (
            "The certificate is not signed by a trusted CA; give that CA in "
            "imap.ca_certificates (PEM), or install it in the system trust store of the "
            "Mailgate host (or SSL_CERT_FILE)."
        ),
        SyncErrorCode.STARTTLS_UNSUPPORTED: (
            "The server does not offer STARTTLS; choose security tls (port 993). Mailgate "
            "never logs in over an unencrypted connection."
        ),
        SyncErrorCode.AUTH_FAILED: _auth_hint(target),
        SyncErrorCode.MAILBOX_NOT_FOUND: (
            "Check imap.folder; folder names are case-sensitive except INBOX."
        ),
        SyncErrorCode.CONNECTION_LOST: "The server closed the connection; try again later.",
        SyncErrorCode.PROTOCOL_ERROR: "The server answered unexpectedly; try again later.",
    }
    return hints[code]


def _auth_hint(target: ImapTarget | None) -> str:
    if target is not None and target.auth is ImapAuth.XOAUTH2:
        return (
            "The server refused the access token: check imap.username (the mailbox to open) "
            "and that the application may use IMAP for it (Microsoft 365: the service "
            "principal needs full access to the mailbox; Google: domain-wide delegation "
            "with the https://mail.google.com/ scope)."
        )
    return (
        "Check imap.username and imap.password. Gmail, Microsoft 365 and iCloud accept "
        "only an app password or OAuth (imap.auth xoauth2) for IMAP, and the mailbox must "
        "have IMAP enabled."
    )


class ImapSyncError(MailgateError):
    """An inbox could not be read; ``code`` says why, ``hint`` what to change.

    The message never contains the password.
    """

    def __init__(
        self, code: SyncErrorCode, message: str, *, hint: str, oauth: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.oauth = oauth

    @classmethod
    def of(cls, code: SyncErrorCode, message: str, target: ImapTarget | None) -> ImapSyncError:
        if target is not None:
            for secret in target.secrets():
                message = message.replace(secret, "***")
        oauth = target is not None and target.auth is ImapAuth.XOAUTH2
        return cls(code, message, hint=hint_for(code, target), oauth=oauth)

    @property
    def field(self) -> str:
        if self.oauth and self.code is SyncErrorCode.AUTH_FAILED:
            return "imap.username"
        return FIELD_FOR_CODE[self.code]

    def summary(self) -> str:
        """One line for the account's ``last_sync_error`` and for logs."""
        return f"{self.code.value}: {self.message}"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return " ".join(_text(v) for v in value)
    return str(value)


def _certificate(exc: ssl.SSLCertVerificationError, target: ImapTarget) -> ImapSyncError:
    detail = exc.verify_message or exc.reason or "verification failed"
    if exc.verify_code == _X509_EXPIRED:
        code = SyncErrorCode.CERTIFICATE_EXPIRED
    elif exc.verify_code in _X509_NAME_MISMATCH:
        code = SyncErrorCode.CERTIFICATE_HOSTNAME_MISMATCH
    else:
        code = SyncErrorCode.CERTIFICATE_UNTRUSTED
    return ImapSyncError.of(code, f"The server's certificate was rejected: {detail}.", target)


def _imap_error(exc: imaplib.IMAP4.error, step: Step, target: ImapTarget) -> ImapSyncError:
    reply = _text(exc.args[0] if exc.args else exc).strip()
    if step is Step.LOGIN:
        return ImapSyncError.of(
            SyncErrorCode.AUTH_FAILED,
            f"The IMAP server refused the login of {target.username!r}: {reply}",
            target,
        )
    if step is Step.STARTTLS:
        return ImapSyncError.of(
            SyncErrorCode.STARTTLS_UNSUPPORTED, f"STARTTLS was refused: {reply}", target
        )
    if step is Step.SELECT:
        return ImapSyncError.of(
            SyncErrorCode.MAILBOX_NOT_FOUND,
            f"The folder {target.folder!r} cannot be opened: {reply}",
            target,
        )
    return ImapSyncError.of(
        SyncErrorCode.PROTOCOL_ERROR, f"The server refused the {step.value}: {reply}", target
    )


def translate(exc: BaseException, step: Step, target: ImapTarget) -> ImapSyncError | None:
    """The :class:`ImapSyncError` for ``exc`` met during ``step``; None for anything else
    (a bug, which should propagate as it is)."""
    if isinstance(exc, ImapSyncError):
        return exc
    if isinstance(exc, PolicyViolation):
        return ImapSyncError.of(SyncErrorCode.POLICY_REFUSED, str(exc), target)
    if isinstance(exc, socket.gaierror):
        return ImapSyncError.of(
            SyncErrorCode.DNS_FAILED, f"{target.host!r} does not resolve: {exc.strerror}", target
        )
    if isinstance(exc, TimeoutError):
        return ImapSyncError.of(
            SyncErrorCode.TIMEOUT, f"No answer in time during {step.value}.", target
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _certificate(exc, target)
    if isinstance(exc, ssl.SSLError):
        if (exc.reason or "") in _NOT_TLS_REASONS and target.security is ImapSecurity.TLS:
            return ImapSyncError.of(
                SyncErrorCode.NOT_TLS,
                f"{target.host}:{target.port} does not speak implicit TLS ({exc.reason}).",
                target,
            )
        return ImapSyncError.of(
            SyncErrorCode.TLS_FAILED, f"TLS failed: {exc.reason or exc}.", target
        )
    if isinstance(exc, imaplib.IMAP4.abort):
        return ImapSyncError.of(
            SyncErrorCode.CONNECTION_LOST, f"Connection lost during {step.value}: {exc}", target
        )
    if isinstance(exc, imaplib.IMAP4.error):
        return _imap_error(exc, step, target)
    if isinstance(exc, ConnectionError | EOFError) and step is not Step.CONNECT:
        return ImapSyncError.of(
            SyncErrorCode.CONNECTION_LOST, f"Connection lost during {step.value}: {exc}", target
        )
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return ImapSyncError.of(
            SyncErrorCode.CONNECT_FAILED,
            f"Cannot connect to {target.host}:{target.port}: {reason}.",
            target,
        )
    return None
