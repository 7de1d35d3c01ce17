"""Mailgate compose package."""
