"""Reusable test support: a throwaway PKI and loopback SMTP servers.

* :mod:`tests.support.tls` — a test CA and server certificates (valid, expired, wrong host
  name) generated with ``cryptography`` into a directory.
* :mod:`tests.support.smtp_servers` — aiosmtpd on 127.0.0.1 (plain, STARTTLS, implicit TLS,
  AUTH), a scripted raw SMTP server for byte-level faults, and a dialer that sends every
  host name to loopback (so TLS can verify a real-looking host name).
"""
