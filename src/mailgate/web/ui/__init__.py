"""Mailgate web/ui package."""
