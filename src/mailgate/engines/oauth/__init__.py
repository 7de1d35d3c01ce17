"""OAuth access tokens for XOAUTH2 and Microsoft Graph (client credentials, JWT bearer)."""
