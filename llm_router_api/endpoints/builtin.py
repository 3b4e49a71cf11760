"""The built-in text utilities: ``POST P/builtin/<name>`` and the same handler at ``POST P/<name>``.

One endpoint class per built-in of ``builtins/registry.py``, made here: it validates the
built-in's request model (``llm_router_lib.data_models.builtin``), checks the size, asks the
built-in for its ``Plan`` (system prompt from the prompt library in the request's language)
and lets ``builtins.runner.respond`` run the calls and answer. Not registered in proxy-only
mode.
"""

from __future__ import annotations

from typing import ClassVar

from llm_router_api.builtins.base import Builtin
from llm_router_api.builtins.registry import BUILTINS
from llm_router_api.builtins.runner import respond
from llm_router_api.core.model_handler import Reply
from llm_router_api.endpoints.base import EndpointI, Incoming
from llm_router_api.errors import PayloadTooLarge
from llm_router_api.schemas.calls import Protocol
from llm_router_lib.data_models.builtin import GenerationOptions


class BuiltinEndpoint(EndpointI):
    protocol = Protocol.OPENAI
    needs_prompts = True
    builtin: ClassVar[Builtin]
    request_model: ClassVar[type[GenerationOptions]]

    def handle(self, incoming: Incoming) -> Reply:
        request: GenerationOptions = self.parse(incoming, self.request_model)
        incoming.config.handler.resolve(request.model_name)  # 404 before anything else
        prompts = incoming.config.prompts
        assert prompts is not None  # built-ins are only mounted when the library is loaded
        language = request.language or self.settings.default_ep_language
        self.check_size(request)
        plan = self.builtin.plan(request, prompts, language)
        return respond(incoming.config.handler, plan, request.stream,
                       self.settings.builtin_concurrency, incoming.request_id,
                       incoming.on_usage, incoming.client_gone)

    def check_size(self, request: GenerationOptions) -> None:
        """At most ``LLM_ROUTER_BUILTIN_MAX_TEXTS`` texts (passages of a map included)."""
        texts = getattr(request, "texts", None)
        if isinstance(texts, dict):
            count = sum(len(passages) for passages in texts.values())
        else:
            count = len(texts) if isinstance(texts, list) else 0
        limit = self.settings.builtin_max_texts
        if count > limit:
            raise PayloadTooLarge(f"texts: {count} texts; at most {limit} are taken in one "
                                  "request (LLM_ROUTER_BUILTIN_MAX_TEXTS)", param="texts",
                                  code="too_many_texts")


def endpoint_for(builtin: type[Builtin]) -> type[BuiltinEndpoint]:
    """The endpoint class serving ``builtin`` (named as the built-in's class)."""
    name = builtin.name()
    attributes = {"builtin": builtin(), "request_model": builtin.request_model,
                  "paths": (f"{{prefix}}/builtin/{name}", f"{{prefix}}/{name}"),
                  "__module__": __name__, "__qualname__": builtin.__name__}
    return type(builtin.__name__, (BuiltinEndpoint,), attributes)


ENDPOINTS = tuple(endpoint_for(builtin) for builtin in BUILTINS)
