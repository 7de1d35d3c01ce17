"""Mailgate worker package."""
