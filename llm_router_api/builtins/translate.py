"""Built-in ``translate``: one call per text, into the target language."""

from __future__ import annotations

from typing import Any

from llm_router_api.builtins.base import Builtin, Plan, PromptLibrary, system_and_user
from llm_router_api.builtins.languages import target_language
from llm_router_lib.data_models.builtin import TranslateRequest


class Translate(Builtin):
    request_model = TranslateRequest

    def plan(self, request: TranslateRequest, prompts: PromptLibrary, language: str) -> Plan:
        target = target_language(request.target_language)
        system = self.system_prompt(prompts, language, TARGET_LANGUAGE=target.name_in(language))

        def result(index: int, text: str | None) -> dict[str, Any]:
            return {"original": request.texts[index],
                    "translated": None if text is None else text.strip()}

        return Plan(request.model_name, [system_and_user(system, t) for t in request.texts],
                    request.generation_options(), result, list)
