"""Built-ins ``generate_article_from_text`` and ``create_full_article_from_texts``: one call."""

from __future__ import annotations

from llm_router_api.builtins.base import Builtin, Plan, PromptLibrary, system_and_user
from llm_router_lib.data_models.builtin import FullArticleRequest, GenerateArticleRequest


def article(text: str) -> dict[str, str]:
    return {"article_text": text}


class GenerateArticleFromText(Builtin):
    request_model = GenerateArticleRequest

    def plan(self, request: GenerateArticleRequest, prompts: PromptLibrary,
             language: str) -> Plan:
        messages = system_and_user(self.system_prompt(prompts, language), request.text)
        return self.single(request, messages, article)


class CreateFullArticleFromTexts(Builtin):
    request_model = FullArticleRequest

    def plan(self, request: FullArticleRequest, prompts: PromptLibrary, language: str) -> Plan:
        parts = [f"<query>\n{request.user_query}\n</query>"]
        if request.article_type:
            parts.append(f"<article_type>{request.article_type}</article_type>")
        texts = "\n".join(f'<text index="{i}">\n{t}\n</text>'
                          for i, t in enumerate(request.texts, 1))
        parts.append(f"<texts>\n{texts}\n</texts>")
        messages = system_and_user(self.system_prompt(prompts, language), "\n".join(parts))
        return self.single(request, messages, article)
