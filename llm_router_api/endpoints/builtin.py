"""The built-in text utilities: ``POST P/builtin/<name>`` and the same handler at ``POST P/<name>``.

Each endpoint validates its request model (``llm_router_lib.data_models.builtin``), takes its
system prompt from the prompt library in the request's language, and says what its model
calls are (a ``Plan``: one message list per job) and how results are shaped;
``core.builtins.respond`` runs the calls and answers. Not registered in proxy-only mode.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from typing import Any, ClassVar

from llm_router_api.core.builtins import Plan, respond
from llm_router_api.core.languages import target_language
from llm_router_api.core.model_handler import Reply
from llm_router_api.core.prompts import PromptLibrary
from llm_router_api.endpoints.base import EndpointI, Incoming
from llm_router_api.errors import PayloadTooLarge
from llm_router_api.schemas.calls import Protocol
from llm_router_lib.data_models.builtin import (
    ConversationRequest,
    ExtendedConversationRequest,
    FullArticleRequest,
    GenerateArticleRequest,
    GenerateQuestionsRequest,
    GenerationOptions,
    GenerativeAnswerRequest,
    SimplifyTextRequest,
    TranslateRequest,
)

Messages = list[dict[str, str]]
QUESTION_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)]|[QqPp]\d+[:.)])\s*")


class BuiltinEndpoint(EndpointI):
    protocol = Protocol.OPENAI
    needs_prompts = True
    request_model: ClassVar[type[GenerationOptions]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.request_model.endpoint
        cls.paths = (f"{{prefix}}/builtin/{name}", f"{{prefix}}/{name}")

    def handle(self, incoming: Incoming) -> Reply:
        request: GenerationOptions = self.parse(incoming, self.request_model)
        incoming.config.handler.resolve(request.model_name)  # 404 before anything else
        prompts = incoming.config.prompts
        assert prompts is not None  # built-ins are only mounted when the library is loaded
        language = request.language or self.settings.default_ep_language
        self.check_size(request)
        plan = self.plan(request, prompts, language)
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

    @abstractmethod
    def plan(self, request: Any, prompts: PromptLibrary, language: str) -> Plan:
        """The model calls this request needs and how to shape their results."""

    def system_prompt(self, prompts: PromptLibrary, language: str, **values: object) -> str:
        return prompts.render(self.request_model.endpoint, language, values)

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


# -- conversations ----------------------------------------------------------------------------
class ConversationWithModel(BuiltinEndpoint):
    request_model = ConversationRequest

    def plan(self, request: ConversationRequest, prompts: PromptLibrary, language: str) -> Plan:
        system = self.system_prompt(prompts, language)
        if isinstance(request, ExtendedConversationRequest) and request.system_prompt:
            system = request.system_prompt
        history = [m.model_dump() for m in request.historical_messages]
        messages = [{"role": "system", "content": system}, *history,
                    {"role": "user", "content": request.user_last_statement}]
        return self.single(request, messages)


class ExtendedConversationWithModel(ConversationWithModel):
    request_model = ExtendedConversationRequest


# -- one call per text ------------------------------------------------------------------------
class GenerateQuestions(BuiltinEndpoint):
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


class Translate(BuiltinEndpoint):
    request_model = TranslateRequest

    def plan(self, request: TranslateRequest, prompts: PromptLibrary, language: str) -> Plan:
        target = target_language(request.target_language)
        system = self.system_prompt(prompts, language, TARGET_LANGUAGE=target.name_in(language))

        def result(index: int, text: str | None) -> dict[str, Any]:
            return {"original": request.texts[index],
                    "translated": None if text is None else text.strip()}

        return Plan(request.model_name, [system_and_user(system, t) for t in request.texts],
                    request.generation_options(), result, list)


class SimplifyText(BuiltinEndpoint):
    request_model = SimplifyTextRequest

    def plan(self, request: SimplifyTextRequest, prompts: PromptLibrary, language: str) -> Plan:
        system = self.system_prompt(prompts, language)
        return Plan(request.model_name, [system_and_user(system, t) for t in request.texts],
                    request.generation_options(),
                    lambda index, text: None if text is None else text.strip(), list)


# -- articles and answers (one call) ----------------------------------------------------------
def article(text: str) -> dict[str, str]:
    return {"article_text": text}


class GenerateArticleFromText(BuiltinEndpoint):
    request_model = GenerateArticleRequest

    def plan(self, request: GenerateArticleRequest, prompts: PromptLibrary,
             language: str) -> Plan:
        messages = system_and_user(self.system_prompt(prompts, language), request.text)
        return self.single(request, messages, article)


class CreateFullArticleFromTexts(BuiltinEndpoint):
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


class GenerativeAnswer(BuiltinEndpoint):
    request_model = GenerativeAnswerRequest

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
