"""The built-in text utilities: one module per built-in, their registry, the prompt library
and the runner that fans a plan out over model calls."""
