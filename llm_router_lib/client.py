"""``LLMRouterClient``: a typed client for llm-router (``requests`` and ``pydantic`` only).

    from llm_router_lib.client import LLMRouterClient

    client = LLMRouterClient("http://localhost:8080", api_key=None, timeout=300)
    client.translate(model_name="m", texts=["Dzień dobry"], target_language="en").response
    for line in client.translate_stream(model_name="m", texts=["..."]):
        print(line)      # {"index": 0, "delta": "..."} ... {"done": true, "response": ...}
    client.chat(model="m", messages=[{"role": "user", "content": "hi"}])

Every built-in has a method returning a ``BuiltinResponse`` (``stream`` false) and a
``*_stream`` method returning an iterator of the parsed NDJSON lines. Each takes keyword fields,
or a request model (``llm_router_lib.data_models.builtin``, fully typed) and optionally keyword
fields that override it: ``client.translate(TranslateRequest(model_name="m", texts=[...]))``.
Arguments are checked
with the same request models the service validates with, before anything is sent. Failures
raise ``llm_router_lib.exceptions`` errors carrying the HTTP status and the server's message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, ValidationError

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
from llm_router_lib.exceptions import (
    APIConnectionError,
    BadRequestError,
    LLMRouterError,
    StreamError,
    error_from,
)

DEFAULT_TIMEOUT = 300.0
DEFAULT_PREFIX = "/api"


class BuiltinResponse(BaseModel):
    """A built-in's non-stream answer. ``errors`` lists the inputs that failed, if any."""

    model_config = ConfigDict(extra="allow")

    response: Any
    generation_time: float
    errors: list[dict[str, Any]] | None = None


class LLMRouterClient:
    def __init__(self, base_url: str, api_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, prefix: str = DEFAULT_PREFIX,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = prefix.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.headers = {"Accept": "application/json, application/x-ndjson"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    # -- built-ins ---------------------------------------------------------------------------
    def conversation_with_model(self, request: ConversationRequest | None = None, /,
                                **fields: Any) -> BuiltinResponse:
        """``model_name``, ``user_last_statement``, ``historical_messages``; options."""
        return self._builtin(ConversationRequest, request, fields)

    def conversation_with_model_stream(self, request: ConversationRequest | None = None, /,
                                       **fields: Any) -> Iterator[dict[str, Any]]:
        return self._builtin_stream(ConversationRequest, request, fields)

    def extended_conversation_with_model(
            self, request: ExtendedConversationRequest | None = None, /,
            **fields: Any) -> BuiltinResponse:
        """As ``conversation_with_model`` plus ``system_prompt``."""
        return self._builtin(ExtendedConversationRequest, request, fields)

    def extended_conversation_with_model_stream(
            self, request: ExtendedConversationRequest | None = None, /,
            **fields: Any) -> Iterator[dict[str, Any]]:
        return self._builtin_stream(ExtendedConversationRequest, request, fields)

    def generate_questions(self, request: GenerateQuestionsRequest | None = None, /,
                           **fields: Any) -> BuiltinResponse:
        """``model_name``, ``texts``, ``number_of_questions``; options."""
        return self._builtin(GenerateQuestionsRequest, request, fields)

    def generate_questions_stream(self, request: GenerateQuestionsRequest | None = None, /,
                                  **fields: Any) -> Iterator[dict[str, Any]]:
        return self._builtin_stream(GenerateQuestionsRequest, request, fields)

    def translate(self, request: TranslateRequest | None = None, /,
                  **fields: Any) -> BuiltinResponse:
        """``model_name``, ``texts``, ``target_language`` (default Polish); options."""
        return self._builtin(TranslateRequest, request, fields)

    def translate_stream(self, request: TranslateRequest | None = None, /,
                         **fields: Any) -> Iterator[dict[str, Any]]:
        return self._builtin_stream(TranslateRequest, request, fields)

    def simplify_text(self, request: SimplifyTextRequest | None = None, /,
                      **fields: Any) -> BuiltinResponse:
        """``model_name``, ``texts``; options."""
        return self._builtin(SimplifyTextRequest, request, fields)

    def simplify_text_stream(self, request: SimplifyTextRequest | None = None, /,
                             **fields: Any) -> Iterator[dict[str, Any]]:
        return self._builtin_stream(SimplifyTextRequest, request, fields)

    def generate_article_from_text(self, request: GenerateArticleRequest | None = None, /,
                                   **fields: Any) -> BuiltinResponse:
        """``model_name``, ``text``; options."""
        return self._builtin(GenerateArticleRequest, request, fields)

    def generate_article_from_text_stream(self, request: GenerateArticleRequest | None = None, /,
                                          **fields: Any) -> Iterator[dict[str, Any]]:
        return self._builtin_stream(GenerateArticleRequest, request, fields)

    def create_full_article_from_texts(self, request: FullArticleRequest | None = None, /,
                                       **fields: Any) -> BuiltinResponse:
        """``model_name``, ``user_query``, ``texts``, ``article_type``; options."""
        return self._builtin(FullArticleRequest, request, fields)

    def create_full_article_from_texts_stream(self, request: FullArticleRequest | None = None, /,
                                              **fields: Any) -> Iterator[dict[str, Any]]:
        return self._builtin_stream(FullArticleRequest, request, fields)

    def generative_answer(self, request: GenerativeAnswerRequest | None = None, /,
                          **fields: Any) -> BuiltinResponse:
        """``model_name``, ``question_str``, ``texts`` (list or ``{doc: [texts]}``),
        ``doc_name_in_answer``, ``question_prompt``, ``system_prompt``; options."""
        return self._builtin(GenerativeAnswerRequest, request, fields)

    def generative_answer_stream(self, request: GenerativeAnswerRequest | None = None, /,
                                 **fields: Any) -> Iterator[dict[str, Any]]:
        return self._builtin_stream(GenerativeAnswerRequest, request, fields)

    # -- OpenAI chat -------------------------------------------------------------------------
    def chat(self, model: str, messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        """``POST /v1/chat/completions``; the ``chat.completion`` object."""
        body = {**fields, "model": model, "messages": messages, "stream": False}
        response = self._post("/v1/chat/completions", body, stream=False)
        with response:
            return dict(response.json())

    def chat_stream(self, model: str, messages: list[dict[str, Any]],
                    **fields: Any) -> Iterator[dict[str, Any]]:
        """The ``chat.completion.chunk`` objects of a streamed chat completion."""
        body = {**fields, "model": model, "messages": messages, "stream": True}
        response = self._post("/v1/chat/completions", body, stream=True)
        with response:
            for raw in _lines(response):
                if not raw.startswith("data:"):
                    continue
                data = raw[5:].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    raise error_from(502, event, cls=StreamError)
                yield event

    # -- plumbing ----------------------------------------------------------------------------
    def _builtin(self, model: type[GenerationOptions], request: GenerationOptions | None,
                 fields: dict[str, Any]) -> BuiltinResponse:
        body = _body(model, request, {**fields, "stream": False})
        response = self._post(self._path(model), body, stream=False)
        with response:
            return BuiltinResponse.model_validate(response.json())

    def _builtin_stream(self, model: type[GenerationOptions], request: GenerationOptions | None,
                        fields: dict[str, Any]) -> Iterator[dict[str, Any]]:
        body = _body(model, request, {**fields, "stream": True})
        response = self._post(self._path(model), body, stream=True)
        with response:
            for raw in _lines(response):
                line = json.loads(raw)
                if line.get("done") and "index" not in line and "error" in line:
                    raise error_from(502, line, cls=StreamError)
                yield line

    def _path(self, model: type[GenerationOptions]) -> str:
        return f"{self.prefix}/builtin/{model.endpoint}"

    def _post(self, path: str, body: dict[str, Any], stream: bool) -> requests.Response:
        try:
            response = self.session.post(self.base_url + path, json=body, headers=self.headers,
                                         timeout=self.timeout, stream=stream)
        except requests.RequestException as exc:
            raise APIConnectionError(0, f"cannot reach {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            with response:
                try:
                    error_body: Any = response.json()
                except ValueError:
                    error_body = response.text
                raise error_from(response.status_code, error_body,
                                 response.headers.get("Retry-After"))
        return response


def _body(model: type[GenerationOptions], request: GenerationOptions | None,
          fields: dict[str, Any]) -> dict[str, Any]:
    """The JSON body: a request model instance and/or keyword fields (fields win)."""
    if request is not None:
        fields = {**request.model_dump(exclude_unset=True), **fields}
    try:
        request = model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequestError(400, f"{where}: {first['msg']}", param=where,
                              type="invalid_request_error") from None
    return request.model_dump(mode="json", exclude_none=True)


def _lines(response: requests.Response) -> Iterator[str]:
    try:
        for raw in response.iter_lines(decode_unicode=False):
            if raw:
                yield raw.decode("utf-8")
    except requests.RequestException as exc:
        raise APIConnectionError(0, f"the stream broke: {exc}") from exc


__all__ = ["BuiltinResponse", "LLMRouterClient", "LLMRouterError"]
