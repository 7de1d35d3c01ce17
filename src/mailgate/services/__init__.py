"""Mailgate services package."""
