"""Mailgate storage package."""
