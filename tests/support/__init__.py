"""Test support: real processes (gateway, redis-server) and config files."""
