"""Request models of the built-in utilities (``POST P/builtin/<name>``).

The service validates every request with these models and the client builds its bodies with
them, so both agree by construction. Types are strict (``"1"`` is not a number, ``1`` is not a
string) and unknown fields are refused, so a typo becomes a 400 naming the field instead of
being ignored.

Every model has ``model_name``, ``language`` (prompt language; the service's
``LLM_ROUTER_DEFAULT_EP_LANGUAGE`` when unset), ``stream`` (default true) and the generation
options below; unset options are not sent to the provider.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Text = Annotated[str, StringConstraints(min_length=1)]
Texts = Annotated[list[Text], Field(min_length=1)]

#: Generation options and the canonical (OpenAI) request field each one becomes.
GENERATION_OPTIONS = {
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "max_new_tokens": "max_tokens",
    "top_p": "top_p",
    "top_k": "top_k",
    "typical_p": "typical_p",
    "repetition_penalty": "repetition_penalty",
    "seed": "seed",
}


class GenerationOptions(BaseModel):
    """Fields every built-in takes."""

    model_config = ConfigDict(strict=True, extra="forbid")

    model_name: Text
    language: Text | None = None
    stream: bool = True
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_new_tokens: Annotated[int, Field(ge=1)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=-1)] | None = None
    typical_p: Annotated[float, Field(gt=0, le=1)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0)] | None = None
    seed: int | None = None

    #: The endpoint name: the path ``P/builtin/<name>`` and the prompt ``<name>.prompt``.
    endpoint: ClassVar[str] = ""

    def generation_options(self) -> dict[str, Any]:
        """The options that were set, under their canonical (OpenAI) names."""
        options: dict[str, Any] = {}
        for name, canonical in GENERATION_OPTIONS.items():
            value = getattr(self, name)
            if value is not None:
                options.setdefault(canonical, value)  # max_tokens wins over max_new_tokens
        return options


class HistoricalMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    role: Annotated[str, Field(pattern="^(system|user|assistant)$")]
    content: str


class ConversationRequest(GenerationOptions):
    """Chat with the library's system prompt; ``response`` is the answer string."""

    endpoint: ClassVar[str] = "conversation_with_model"

    user_last_statement: Text
    historical_messages: list[HistoricalMessage] = Field(default_factory=list)


class ExtendedConversationRequest(ConversationRequest):
    """As ``ConversationRequest``, with the caller's own ``system_prompt`` (else the library's)."""

    endpoint: ClassVar[str] = "extended_conversation_with_model"

    system_prompt: Text | None = None


class GenerateQuestionsRequest(GenerationOptions):
    """``response``: ``[{"text", "questions": [...]}]`` in input order."""

    endpoint: ClassVar[str] = "generate_questions"

    texts: Texts
    number_of_questions: Annotated[int, Field(ge=1, le=50)] = 1


class TranslateRequest(GenerationOptions):
    """``response``: ``[{"original", "translated"}]``; into Polish unless ``target_language``
    (an ISO 639-1 code or an English language name) says otherwise."""

    endpoint: ClassVar[str] = "translate"

    texts: Texts
    target_language: Annotated[str, StringConstraints(min_length=2, max_length=40)] = "pl"


class SimplifyTextRequest(GenerationOptions):
    """``response``: the simplified texts, in input order."""

    endpoint: ClassVar[str] = "simplify_text"

    texts: Texts


class GenerateArticleRequest(GenerationOptions):
    """``response``: ``{"article_text"}`` written from one text."""

    endpoint: ClassVar[str] = "generate_article_from_text"

    text: Text


class FullArticleRequest(GenerationOptions):
    """``response``: ``{"article_text"}`` written from several texts, guided by ``user_query``."""

    endpoint: ClassVar[str] = "create_full_article_from_texts"

    user_query: Text
    texts: Texts
    article_type: Text | None = None


class GenerativeAnswerRequest(GenerationOptions):
    """``response``: ``{"article_text"}``, the answer to ``question_str`` from ``texts`` only.

    ``texts`` is a list of passages or a ``{doc_name: [passages]}`` map; with
    ``doc_name_in_answer`` the answer cites the document names. ``question_prompt`` is put
    before the question; ``system_prompt`` replaces the library's system prompt.
    """

    endpoint: ClassVar[str] = "generative_answer"

    question_str: Text
    texts: Texts | Annotated[dict[Text, Texts], Field(min_length=1)]
    doc_name_in_answer: bool = False
    question_prompt: Text | None = None
    system_prompt: Text | None = None


BUILTIN_REQUESTS: tuple[type[GenerationOptions], ...] = (
    ConversationRequest,
    ExtendedConversationRequest,
    GenerateQuestionsRequest,
    TranslateRequest,
    SimplifyTextRequest,
    GenerateArticleRequest,
    FullArticleRequest,
    GenerativeAnswerRequest,
)
