"""Mailgate inbound package."""
