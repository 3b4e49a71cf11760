"""The LLM servers ``llm-router config discover`` knows: their usual port and how to ask
them for their models. Nothing here imports a network library (see ``cli/__init__``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 1.0
OLLAMA_TAGS = "/api/tags"
OPENAI_MODELS = "/v1/models"


@dataclass(frozen=True)
class Server:
    """A kind of server: its name (in ``--ports`` and provider ids), port, ``api_type`` and
    the path that lists its models."""

    name: str
    port: int
    api_type: str
    models_path: str

    def on(self, port: int) -> Server:
        return dataclasses.replace(self, port=port)


KNOWN: tuple[Server, ...] = (
    Server("ollama", 11434, "ollama", OLLAMA_TAGS),
    Server("vllm", 8000, "vllm", OPENAI_MODELS),
    Server("lmstudio", 1234, "openai", OPENAI_MODELS),
    Server("llamacpp", 8080, "openai", OPENAI_MODELS),
    Server("tabbyapi", 5000, "openai", OPENAI_MODELS),
    Server("koboldcpp", 5001, "openai", OPENAI_MODELS),
    Server("sglang", 30000, "openai", OPENAI_MODELS),
)
