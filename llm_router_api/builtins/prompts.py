"""The prompt library: ``LLM_ROUTER_PROMPTS_DIR/<area>/<lang>/<name>.prompt``, loaded once.

    resources/prompts/
        builtin/system/en/translate.prompt      area "builtin/system", language "en"
        builtin/system/pl/translate.prompt

``load_prompts`` (called by ``builtins/registry.load_prompt_library``) reads every ``*.prompt``
file at startup into memory (nothing is read per request). For the built-in utilities' area it
checks that every prompt a built-in needs (``required``, from the built-ins' registry) exists in
the default language and in every other language directory present, so a language is either
complete or startup stops with ``PromptError`` naming the missing file. In proxy-only mode
(``LLM_ROUTER_MINIMUM``) it is not loaded at all.

A request's ``language`` is only ever a key into the loaded table: it is checked against
``LANGUAGE_CODE`` first and never joined to a path, so no value can reach outside the directory.
An unknown language is a 400 that lists the languages that exist.

Placeholders are ``##NAME##`` (upper-case letters, digits, ``_``), filled in one pass, so text
substituted from a request is never expanded again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from llm_router_api.errors import RouterError, ValidationFailed

log = logging.getLogger("llm_router.prompts")

BUILTIN_AREA = "builtin/system"
SUFFIX = ".prompt"
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)?$")
PLACEHOLDER = re.compile(r"##([A-Z0-9_]+)##")

class PromptError(ValueError):
    """The prompts directory cannot serve the built-ins; the message names the file."""


class UnknownLanguage(ValidationFailed):
    def __init__(self, language: str, available: Iterable[str]) -> None:
        names = ", ".join(sorted(available)) or "none"
        shown = language if len(language) <= 32 else language[:32] + "..."
        super().__init__(f"language {shown!r} has no prompts here; available languages: "
                         f"{names}", param="language", code="unknown_language")


@dataclass(frozen=True)
class PromptLibrary:
    """Prompt texts by ``(area, language, name)``; immutable after loading."""

    texts: Mapping[tuple[str, str, str], str]
    default_language: str

    def languages(self, area: str = BUILTIN_AREA) -> list[str]:
        return sorted({lang for a, lang, _ in self.texts if a == area})

    def get(self, name: str, language: str | None, area: str = BUILTIN_AREA) -> str:
        """The raw prompt; ``UnknownLanguage`` (400) when there is none in that language."""
        language = language or self.default_language
        text = self.texts.get((area, language, name)) if LANGUAGE_CODE.match(language) else None
        if text is None:
            raise UnknownLanguage(language, self.languages(area))
        return text

    def render(self, name: str, language: str | None,
               values: Mapping[str, object] | None = None, area: str = BUILTIN_AREA) -> str:
        """The prompt with every ``##NAME##`` replaced by ``values[NAME]``."""
        text = self.get(name, language, area)

        def fill(match: re.Match[str]) -> str:
            key = match.group(1)
            if values is None or key not in values:
                raise RouterError(f"prompt '{name}' uses ##{key}## which nothing fills")
            return str(values[key])

        return PLACEHOLDER.sub(fill, text).strip()


def read_prompts(root: Path) -> dict[tuple[str, str, str], str]:
    """Every ``<area>/<lang>/<name>.prompt`` under ``root`` whose language is a valid code."""
    texts: dict[tuple[str, str, str], str] = {}
    for path in sorted(root.rglob("*" + SUFFIX)):
        parts = path.relative_to(root).parts
        if len(parts) < 3 or not path.is_file():
            continue
        area, language, name = "/".join(parts[:-2]), parts[-2], path.name[:-len(SUFFIX)]
        if not LANGUAGE_CODE.match(language):
            log.warning("prompt %s ignored: '%s' is not a language code", path, language)
            continue
        try:
            texts[(area, language, name)] = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise PromptError(f"{path}: cannot read: {exc}") from None
    return texts


def load_prompts(root: str | Path, default_language: str,
                 required: Iterable[str]) -> PromptLibrary:
    """Load and check the library; ``PromptError`` says which prompt file is missing."""
    base = Path(root)
    if not base.is_dir():
        raise PromptError(f"LLM_ROUTER_PROMPTS_DIR={str(root)!r}: not a directory")
    if not LANGUAGE_CODE.match(default_language):
        raise PromptError(f"LLM_ROUTER_DEFAULT_EP_LANGUAGE={default_language!r}: "
                          "not a language code such as 'en' or 'pl'")
    texts = read_prompts(base)
    languages = {lang for area, lang, _ in texts if area == BUILTIN_AREA} | {default_language}
    for language in sorted(languages):
        for name in required:
            if (BUILTIN_AREA, language, name) not in texts:
                missing = base / BUILTIN_AREA / language / (name + SUFFIX)
                raise PromptError(f"prompt file {missing} is missing (every built-in needs a "
                                  f"prompt in each language; languages found: "
                                  f"{', '.join(sorted(languages))})")
    return PromptLibrary(texts=texts, default_language=default_language)
