"""Mailgate web package."""
