"""API keys: from ``LLM_ROUTER_API_KEYS`` and/or a keys file, held only as SHA-256 digests.

Keys file (``LLM_ROUTER_API_KEYS_FILE``)::

    {"keys": [{"id": "team-a", "key": "sk-..."}                      # or "sha256": "<hex>"
              {"id": "team-b", "sha256": "9f86d0...", "requests_per_minute": 60,
               "tokens_per_minute": 100000, "max_concurrent": 4, "models": ["llama3.2:3b"]}]}

A presented key is hashed and compared with every known digest in constant time; the result
names only the key's ``id``, which is all that logs and metrics ever show.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from llm_router_api.errors import Unauthorized
from llm_router_api.jsonfile import json_path, read_json
from llm_router_api.settings import Settings

SHA256_HEX = 64


class KeysFileError(ValueError):
    """The keys file cannot be used; the message names the file and the entry."""


class ApiKey(BaseModel):
    """One caller key: its id, digest, optional limits and allowed models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    key: str | None = Field(default=None, min_length=8, repr=False, exclude=True)
    sha256: str | None = Field(default=None, repr=False)
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    max_concurrent: PositiveInt | None = None
    models: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _digest(self) -> ApiKey:
        if self.key is not None:
            object.__setattr__(self, "sha256", digest(self.key))
            object.__setattr__(self, "key", None)  # keep only the digest in memory
        elif self.sha256 is None or len(self.sha256) != SHA256_HEX:
            raise ValueError("needs 'key' or a 64-character hex 'sha256'")
        else:
            object.__setattr__(self, "sha256", self.sha256.lower())
        return self

    def allows(self, model: str) -> bool:
        if self.models is None:
            return True
        base = model.removesuffix(":latest")
        return any(base == allowed.removesuffix(":latest") for allowed in self.models)


class _KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[ApiKey]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Every configured key. Empty means authentication is off."""

    def __init__(self, keys: list[ApiKey]) -> None:
        ids = [k.id for k in keys]
        duplicates = {i for i in ids if ids.count(i) > 1}
        if duplicates:
            raise KeysFileError(f"duplicate key ids: {', '.join(sorted(duplicates))}")
        self._keys = keys

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        keys = [ApiKey(id=f"key-{n}", key=raw) if len(raw) >= 8 else _short(n)
                for n, raw in enumerate(settings.api_keys, start=1)]
        if settings.api_keys_file:
            keys += load_keys_file(settings.api_keys_file)
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, headers: Mapping[str, str]) -> ApiKey:
        """The key presented as ``Authorization: Bearer`` or ``x-api-key``; 401 otherwise."""
        presented = presented_key(headers)
        if not presented:
            raise Unauthorized("an API key is required (Authorization: Bearer or x-api-key)")
        wanted = digest(presented).encode()
        found = None
        for key in self._keys:  # every digest is compared, so timing says nothing
            if hmac.compare_digest(wanted, (key.sha256 or "").encode()):
                found = key
        if found is None:
            raise Unauthorized("invalid API key")
        return found


def header(headers: Mapping[str, str], name: str) -> str:
    """A request header by case-insensitive name (``""`` when absent)."""
    name = name.lower()
    return next((v for k, v in headers.items() if k.lower() == name), "")


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of ``Authorization: Bearer <token>`` (``""`` when there is none): the one
    parser for caller keys and the admin token."""
    scheme, _, value = header(headers, "authorization").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def presented_key(headers: Mapping[str, str]) -> str:
    """A caller key: the Bearer token, else ``x-api-key`` (Anthropic's header)."""
    return bearer_token(headers) or header(headers, "x-api-key").strip()


def _short(n: int) -> ApiKey:
    raise KeysFileError(f"LLM_ROUTER_API_KEYS: key {n} is shorter than 8 characters")


def load_keys_file(path: str) -> list[ApiKey]:
    file = Path(path)
    raw = read_json(file, KeysFileError)
    try:
        return _KeysFile.model_validate(raw).keys
    except ValidationError as exc:
        first = exc.errors()[0]
        raise KeysFileError(f"{file}: ${json_path(first['loc'])}: {first['msg']}") from None
