"""The built-in text utilities: THE list. Add a built-in by writing its module (a ``Builtin``
subclass) and naming it here; its routes (``endpoints/builtin.py``) and the prompt files
checked at startup (``load_prompt_library``) follow from this list."""

from __future__ import annotations

from llm_router_api.builtins.answer import GenerativeAnswer
from llm_router_api.builtins.articles import CreateFullArticleFromTexts, GenerateArticleFromText
from llm_router_api.builtins.base import Builtin
from llm_router_api.builtins.conversation import (
    ConversationWithModel,
    ExtendedConversationWithModel,
)
from llm_router_api.builtins.prompts import PromptLibrary, load_prompts
from llm_router_api.builtins.questions import GenerateQuestions
from llm_router_api.builtins.simplify import SimplifyText
from llm_router_api.builtins.translate import Translate
from llm_router_api.settings import Settings

BUILTINS: tuple[type[Builtin], ...] = (
    ConversationWithModel,
    ExtendedConversationWithModel,
    GenerateQuestions,
    Translate,
    SimplifyText,
    GenerateArticleFromText,
    CreateFullArticleFromTexts,
    GenerativeAnswer,
)


def required_prompts() -> tuple[str, ...]:
    """Every prompt file the built-ins read (each must exist in every language)."""
    return tuple(dict.fromkeys(name for b in BUILTINS for name in b.prompts()))


def load_prompt_library(settings: Settings) -> PromptLibrary | None:
    """The library the settings ask for; ``None`` in proxy-only mode (it is not read at all)."""
    if settings.minimum:
        return None
    return load_prompts(settings.prompts_dir, settings.default_ep_language, required_prompts())
