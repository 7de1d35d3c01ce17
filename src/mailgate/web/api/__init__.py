"""Mailgate web/api package."""
