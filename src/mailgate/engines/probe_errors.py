"""Turning what went wrong during a probe into an error code, a message and a hint.

Foreign exceptions (``ssl``, ``socket``, asyncio) are translated here, once. The message says
what happened in the words of the step that failed; it never contains a secret (only server
replies and library reasons are quoted).
"""

from __future__ import annotations

import errno
import socket
import ssl

from mailgate.engines.config import ServerConfig
from mailgate.engines.probe_report import ProbeError, ProbeErrorCode, StepName, hint_for
from mailgate.errors import PolicyViolation
from mailgate.net.tls import (
    NOT_TLS_REASONS,
    VERSION_REASONS,
    CertificateProblem,
    certificate_problem,
)

_CERTIFICATE_CODES = {
    CertificateProblem.EXPIRED: ProbeErrorCode.CERTIFICATE_EXPIRED,
    CertificateProblem.NOT_YET_VALID: ProbeErrorCode.CERTIFICATE_NOT_YET_VALID,
    CertificateProblem.NAME_MISMATCH: ProbeErrorCode.CERTIFICATE_HOSTNAME_MISMATCH,
    CertificateProblem.UNTRUSTED: ProbeErrorCode.CERTIFICATE_UNTRUSTED,
    CertificateProblem.OTHER: ProbeErrorCode.CERTIFICATE_UNTRUSTED,
}

_UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL})


def make_error(code: ProbeErrorCode, message: str, config: ServerConfig) -> ProbeError:
    """A :class:`ProbeError` with the hint for ``code`` filled in for ``config``."""
    hint = hint_for(code, host=config.host, port=config.port, min_tls=config.min_tls_version.value)
    return ProbeError(code, message, hint)


def _certificate_error(exc: ssl.SSLCertVerificationError, config: ServerConfig) -> ProbeError:
    detail = exc.verify_message or exc.reason or "verification failed"
    code = _CERTIFICATE_CODES[certificate_problem(exc)]
    return make_error(code, f"The server's certificate was rejected: {detail}.", config)


def _tls_error(exc: ssl.SSLError, step: StepName, config: ServerConfig) -> ProbeError:
    reason = exc.reason or ""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _certificate_error(exc, config)
    if reason in VERSION_REASONS:
        return make_error(
            ProbeErrorCode.TLS_VERSION_TOO_LOW,
            f"The server and Mailgate share no TLS version of {config.min_tls_version.value} "
            f"or newer ({reason}).",
            config,
        )
    if step is StepName.TLS and reason in NOT_TLS_REASONS:
        return make_error(
            ProbeErrorCode.TLS_ON_PLAIN_PORT,
            f"Implicit TLS failed: the server on port {config.port} answered in plain text "
            f"({reason}).",
            config,
        )
    return make_error(
        ProbeErrorCode.TLS_HANDSHAKE_FAILED,
        f"The TLS handshake failed ({reason or type(exc).__name__}).",
        config,
    )


def _timeout(step: StepName, config: ServerConfig) -> ProbeError:
    what = {
        StepName.CONNECT: "connecting",
        StepName.TLS: "the TLS handshake",
        StepName.GREETING: "the server's greeting",
        StepName.STARTTLS: "STARTTLS",
    }.get(step, f"the reply to {step.value.split('_')[0].upper()}")
    return make_error(
        ProbeErrorCode.TIMEOUT,
        f"Timed out after {config.timeout_seconds:g} s waiting for {what}.",
        config,
    )


def classify(exc: BaseException, step: StepName, config: ServerConfig) -> ProbeError:
    """The probe error for ``exc`` raised during ``step``."""
    if isinstance(exc, PolicyViolation):
        code = ProbeErrorCode.DESTINATION_REFUSED
        if exc.code == ProbeErrorCode.PORT_25_REFUSED.value:
            code = ProbeErrorCode.PORT_25_REFUSED
        return make_error(code, str(exc), config)
    if isinstance(exc, socket.gaierror):
        return make_error(
            ProbeErrorCode.DNS_FAILURE, f"{config.host} could not be resolved: {exc}.", config
        )
    if isinstance(exc, TimeoutError):
        return _timeout(step, config)
    if isinstance(exc, ssl.SSLError):
        return _tls_error(exc, step, config)
    if isinstance(exc, ConnectionRefusedError):
        return make_error(
            ProbeErrorCode.CONNECTION_REFUSED,
            f"{config.host}:{config.port} refused the connection.",
            config,
        )
    if isinstance(exc, ConnectionError | EOFError):
        return make_error(
            ProbeErrorCode.CONNECTION_LOST,
            f"The server closed the connection during {step.value}.",
            config,
        )
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return make_error(
            ProbeErrorCode.NETWORK_UNREACHABLE, f"{config.host} is unreachable: {exc}.", config
        )
    if isinstance(exc, OSError):
        return make_error(
            ProbeErrorCode.CONNECTION_FAILED, f"Could not connect: {exc.strerror or exc}.", config
        )
    raise exc
