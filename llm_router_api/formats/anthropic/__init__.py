"""Anthropic's Messages API: caller side, upstream side, vocabulary."""
