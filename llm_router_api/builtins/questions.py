"""Built-in ``generate_questions``: one call per text, its answer read as a list of questions."""

from __future__ import annotations

import re
from typing import Any

from llm_router_api.builtins.base import Builtin, Plan, PromptLibrary, system_and_user
from llm_router_lib.data_models.builtin import GenerateQuestionsRequest

QUESTION_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)]|[QqPp]\d+[:.)])\s*")


class GenerateQuestions(Builtin):
    request_model = GenerateQuestionsRequest

    def plan(self, request: GenerateQuestionsRequest, prompts: PromptLibrary,
             language: str) -> Plan:
        count = request.number_of_questions
        system = self.system_prompt(prompts, language, NUMBER_OF_QUESTIONS=count)

        def result(index: int, text: str | None) -> dict[str, Any]:
            questions = None if text is None else parse_questions(text, count)
            return {"text": request.texts[index], "questions": questions}

        return Plan(request.model_name, [system_and_user(system, t) for t in request.texts],
                    request.generation_options(), result, list)


def parse_questions(text: str, limit: int) -> list[str]:
    """One question per non-empty line, list markers and numbering removed."""
    lines = (QUESTION_MARKER.sub("", line).strip() for line in text.splitlines())
    return [line for line in lines if line][:limit]
