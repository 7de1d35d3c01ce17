"""The HTTP engines: shared plumbing, SendGrid and Microsoft Graph."""
