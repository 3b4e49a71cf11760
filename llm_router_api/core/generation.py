"""A configuration generation: everything a request reads from the operator's files, at once.

    files ──load_inputs──► Inputs (models, keys, prompts, sha256)      validated together
                             └─make──► Generation (+ a ModelHandler over the shared parts)
    ConfigHolder.current ◄── swap(new generation)                       one reference swap

A ``Generation`` is immutable. The web layer reads ``holder.current`` once per request and hands
it to the endpoint (``Incoming.config``), so a request runs on one configuration from start to
end even when a reload swaps in another meanwhile: a stream keeps the handler (and the provider
configs of its lease) it started with. What outlives generations is shared by them all: the
chooser and its state store (keyed by provider id, so counters, cool-downs, latencies and
leases of providers that stay are kept; leases of removed providers are released into the same
store), the adapters, the transport and the metrics.

``load_inputs`` raises one of ``INVALID_CONFIG`` with the same one-line message startup prints.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from llm_router_api.auth.keys import KeyRing, KeysFileError
from llm_router_api.core.config import ConfigError, load_models_config
from llm_router_api.core.model_handler import ModelHandler
from llm_router_api.core.prompts import PromptError, PromptLibrary, load_prompt_library
from llm_router_api.schemas.config import ModelsConfig
from llm_router_api.settings import Settings

#: What a broken models-config, keys file or prompt library raises (one line, file named).
INVALID_CONFIG = (ConfigError, KeysFileError, PromptError)


@dataclass(frozen=True)
class Inputs:
    """The operator's files, read and validated together."""

    models: ModelsConfig
    keys: KeyRing
    prompts: PromptLibrary | None

    @property
    def sha256(self) -> str:
        """The SHA-256 of the models-config file's bytes (``sha256sum models-config.json``)."""
        return self.models.sha256


def load_inputs(settings: Settings) -> Inputs:
    """Read models-config, keys and prompts; raise one of ``INVALID_CONFIG`` on any mistake."""
    return Inputs(models=load_models_config(settings.models_config, settings.environ),
                  keys=KeyRing.from_settings(settings),
                  prompts=load_prompt_library(settings))


@dataclass(frozen=True)
class Generation:
    """One configuration in use. ``number`` counts the generations of this process (1 at
    startup); ``sha256`` identifies the models-config file across processes."""

    models: ModelsConfig
    handler: ModelHandler
    keys: KeyRing
    prompts: PromptLibrary | None
    number: int = 1
    loaded_at: float = 0.0

    @property
    def sha256(self) -> str:
        return self.models.sha256


class ConfigHolder:
    """The current generation. Reading ``current`` is one attribute read; ``swap`` replaces it
    whole (never a half-updated configuration)."""

    def __init__(self, first: Generation) -> None:
        self._current = first
        self._lock = threading.Lock()

    @property
    def current(self) -> Generation:
        return self._current

    def swap(self, inputs: Inputs) -> Generation:
        """Make a generation of ``inputs`` current (its handler shares every part but the
        models with the one before); returns it."""
        with self._lock:
            old = self._current
            new = Generation(models=inputs.models, handler=old.handler.with_models(inputs.models),
                             keys=inputs.keys, prompts=inputs.prompts, number=old.number + 1,
                             loaded_at=time.time())
            self._current = new
            return new


def first_generation(inputs: Inputs, handler: ModelHandler) -> Generation:
    return Generation(models=inputs.models, handler=handler, keys=inputs.keys,
                      prompts=inputs.prompts, number=1, loaded_at=time.time())
