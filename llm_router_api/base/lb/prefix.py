"""Prefix tracking: chained block hashes of a prompt, and a bounded per-provider table of them.

A prompt (already rendered as text) is cut into fixed blocks of ``block_size`` characters; only
full blocks are hashed (as a server's KV cache only reuses full blocks). Block i's hash covers
block i and the hash of block i-1, so equal hash i means an equal prompt up to the end of block i,
and "how much of this prompt did this provider see" is the count of leading hashes it knows. The
chain starts from a seed (the model name): two models never share cache entries.

``PrefixTable`` is one provider's memory of the hashes it was sent, in one process: an LRU bounded
to ``entries`` hashes, each forgotten ``ttl`` seconds after it was last sent. The Redis store keeps
the same table as a sorted set (``redis_cache_lua``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

DIGEST_SIZE = 8


def block_hashes(text: str, block_size: int, seed: str = "") -> tuple[str, ...]:
    """Hex hashes of the full ``block_size``-character blocks of ``text``, each chained to the
    previous one (the first to ``seed``)."""
    previous = hashlib.blake2b(seed.encode(), digest_size=DIGEST_SIZE).digest()
    hashes: list[str] = []
    # Blocks are cut on characters (what the settings speak of), hashed as UTF-8.
    for start in range(0, len(text) - block_size + 1, block_size):
        block = text[start:start + block_size].encode("utf-8", "surrogatepass")
        previous = hashlib.blake2b(previous + block, digest_size=DIGEST_SIZE).digest()
        hashes.append(previous.hex())
    return tuple(hashes)


class PrefixTable:
    """One provider's sent hashes: LRU-bounded to ``entries``, each alive ``ttl`` seconds."""

    def __init__(self, entries: int, ttl: float) -> None:
        self.entries = entries
        self.ttl = ttl
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def has(self, value: str, now: float) -> bool:
        expiry = self._expiry.get(value)
        return expiry is not None and expiry > now

    def matches(self, hashes: Sequence[str], now: float) -> int:
        count = 0
        for value in hashes:
            if not self.has(value, now):
                break
            count += 1
        return count

    def record(self, hashes: Sequence[str], now: float) -> None:
        """Remember ``hashes`` as just sent. The deepest block goes in first, so the LRU end
        forgets a prompt's tail before its head (a head alone still matches)."""
        expiry = now + self.ttl
        for value in reversed(hashes):
            self._expiry[value] = expiry
            self._expiry.move_to_end(value)
        while len(self._expiry) > self.entries:
            self._expiry.popitem(last=False)
