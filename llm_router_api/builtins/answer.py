"""Built-in ``generative_answer``: one call answering a question from the given documents."""

from __future__ import annotations

from llm_router_api.builtins.articles import article
from llm_router_api.builtins.base import Builtin, Plan, PromptLibrary, system_and_user
from llm_router_lib.data_models.builtin import GenerativeAnswerRequest


class GenerativeAnswer(Builtin):
    request_model = GenerativeAnswerRequest
    extra_prompts = ("generative_answer_doc_names",)

    def plan(self, request: GenerativeAnswerRequest, prompts: PromptLibrary,
             language: str) -> Plan:
        rule = (prompts.render("generative_answer_doc_names", language)
                if request.doc_name_in_answer else "")
        if request.system_prompt:
            system = f"{request.system_prompt}\n{rule}".strip()
        else:
            system = self.system_prompt(prompts, language, DOC_NAME_RULE=rule)
        question = request.question_str
        if request.question_prompt:
            question = f"{request.question_prompt}\n{question}"
        user = f"{context_block(request.texts)}\n<question>\n{question}\n</question>"
        return self.single(request, system_and_user(system, user), article)


def context_block(texts: list[str] | dict[str, list[str]]) -> str:
    """The context as ``<document>`` tags: named by the map's keys, else numbered."""
    if isinstance(texts, dict):
        documents = [(f'name="{name}"', "\n\n".join(passages))
                     for name, passages in texts.items()]
    else:
        documents = [(f'name="{i}"', text) for i, text in enumerate(texts, 1)]
    body = "\n".join(f"<document {attr}>\n{text}\n</document>" for attr, text in documents)
    return f"<context>\n{body}\n</context>"
