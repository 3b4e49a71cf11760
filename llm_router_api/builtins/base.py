"""``Builtin``: one built-in text utility — its request model, the prompts it needs and its
``plan`` (the model calls one request needs and how their results are shaped). No Flask and no
HTTP here: ``endpoints/builtin.py`` serves every built-in of ``builtins/registry.py`` at
``P/builtin/<name>`` and ``P/<name>``, and ``builtins/runner.py`` runs the plan.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from llm_router_api.builtins.prompts import PromptLibrary
from llm_router_api.builtins.runner import Plan
from llm_router_lib.data_models.builtin import GenerationOptions

Messages = list[dict[str, str]]

class Builtin(ABC):
    #: The request model; its ``endpoint`` is the built-in's name (route and prompt file).
    request_model: ClassVar[type[GenerationOptions]]
    #: Prompt files it reads besides ``<name>.prompt``.
    extra_prompts: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def name(cls) -> str:
        return cls.request_model.endpoint

    @classmethod
    def prompts(cls) -> tuple[str, ...]:
        """Every prompt file (in each language) this built-in needs."""
        return (cls.name(), *cls.extra_prompts)

    @abstractmethod
    def plan(self, request: Any, prompts: PromptLibrary, language: str) -> Plan:
        """The model calls this request needs and how to shape their results."""

    def system_prompt(self, prompts: PromptLibrary, language: str, **values: object) -> str:
        return prompts.render(self.name(), language, values)

    @staticmethod
    def single(request: GenerationOptions, messages: Messages, shape: Any = None) -> Plan:
        """A plan of one call (index 0) whose text is the whole response (or ``shape(text)``)."""
        def result(index: int, text: str | None) -> Any:
            answer = (text or "").strip()
            return shape(answer) if shape else answer

        return Plan(request.model_name, [messages], request.generation_options(), result,
                    lambda results: results[0])


def system_and_user(system: str, user: str) -> Messages:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
