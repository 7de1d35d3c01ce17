"""Header text from SMTP submission that decodes to no Unicode text stays readable."""

from __future__ import annotations

from mailgate.submission import SubmissionServer
from tests.delivery.conftest import Tenant
from tests.submission.conftest import message, message_count, queued_id, send, token_of


async def test_a_subject_decoding_to_a_lone_surrogate_is_kept_as_written(
    tenant: Tenant, plain: SubmissionServer
) -> None:
    # UTF-7 "+2AA-" is the lone surrogate U+D800: the log keeps the encoded-word itself.
    data = message().replace(b"Subject: Invoice 7", b"Subject: =?utf-7?q?+2AA-?= 7")
    reply = await send(plain.port, data, token=token_of(tenant))
    stored = await tenant.message(queued_id(reply))
    assert stored["subject"] == "=?utf-7?q?+2AA-?= 7"
    assert await message_count(tenant) == 1
