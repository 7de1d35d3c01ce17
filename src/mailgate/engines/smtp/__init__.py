"""The SMTP engine: wire, session, transaction, pool, settings, transcript, XOAUTH2."""
