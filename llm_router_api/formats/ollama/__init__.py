"""Ollama's wire format: caller side, upstream side, vocabulary."""
