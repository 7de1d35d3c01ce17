"""Mailgate submission package."""
