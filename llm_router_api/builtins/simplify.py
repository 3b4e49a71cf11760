"""Built-in ``simplify_text``: one call per text."""

from __future__ import annotations

from llm_router_api.builtins.base import Builtin, Plan, PromptLibrary, system_and_user
from llm_router_lib.data_models.builtin import SimplifyTextRequest


class SimplifyText(Builtin):
    request_model = SimplifyTextRequest

    def plan(self, request: SimplifyTextRequest, prompts: PromptLibrary, language: str) -> Plan:
        system = self.system_prompt(prompts, language)
        return Plan(request.model_name, [system_and_user(system, t) for t in request.texts],
                    request.generation_options(),
                    lambda index, text: None if text is None else text.strip(), list)
