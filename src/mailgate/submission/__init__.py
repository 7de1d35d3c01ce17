"""SMTP submission (SPEC.md section 7): an edge like ``web/`` for applications that can only
speak SMTP. ``start_submission`` runs the listener next to the API in ``mailgate serve``;
see ``docs/submission.md``."""

from __future__ import annotations

from mailgate.submission.config import SubmissionConfig
from mailgate.submission.server import SubmissionServer, serve_submission, start_submission

__all__ = ["SubmissionConfig", "SubmissionServer", "serve_submission", "start_submission"]
