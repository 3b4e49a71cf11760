"""The HTTP layer under every upstream adapter: the pooled client and secret masking."""
