"""Mailgate engines package."""
