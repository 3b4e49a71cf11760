"""Caller authentication (API keys) and per-key limits. No Flask here."""
