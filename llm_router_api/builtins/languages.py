"""Target languages ``translate`` understands: an ISO 639-1 code or an English name."""

from __future__ import annotations

from dataclasses import dataclass

from llm_router_api.errors import ValidationFailed


@dataclass(frozen=True)
class Language:
    code: str
    english: str
    polish: str

    def name_in(self, prompt_language: str) -> str:
        """The name to put into a prompt written in ``prompt_language``."""
        return self.polish if prompt_language.split("-")[0] == "pl" else self.english


LANGUAGES = tuple(Language(*row) for row in (
    ("ar", "Arabic", "arabski"), ("bg", "Bulgarian", "bułgarski"), ("cs", "Czech", "czeski"),
    ("da", "Danish", "duński"), ("de", "German", "niemiecki"), ("el", "Greek", "grecki"),
    ("en", "English", "angielski"), ("es", "Spanish", "hiszpański"),
    ("et", "Estonian", "estoński"), ("fi", "Finnish", "fiński"), ("fr", "French", "francuski"),
    ("he", "Hebrew", "hebrajski"), ("hi", "Hindi", "hindi"), ("hr", "Croatian", "chorwacki"),
    ("hu", "Hungarian", "węgierski"), ("it", "Italian", "włoski"),
    ("ja", "Japanese", "japoński"), ("ko", "Korean", "koreański"),
    ("lt", "Lithuanian", "litewski"), ("lv", "Latvian", "łotewski"),
    ("nl", "Dutch", "niderlandzki"), ("no", "Norwegian", "norweski"), ("pl", "Polish", "polski"),
    ("pt", "Portuguese", "portugalski"), ("ro", "Romanian", "rumuński"),
    ("ru", "Russian", "rosyjski"), ("sk", "Slovak", "słowacki"), ("sl", "Slovenian", "słoweński"),
    ("sr", "Serbian", "serbski"), ("sv", "Swedish", "szwedzki"), ("tr", "Turkish", "turecki"),
    ("uk", "Ukrainian", "ukraiński"), ("vi", "Vietnamese", "wietnamski"),
    ("zh", "Chinese", "chiński"),
))
_BY_KEY = {key: lang for lang in LANGUAGES for key in (lang.code, lang.english.lower())}


def target_language(value: str) -> Language:
    """The language ``value`` names; a 400 naming ``target_language`` otherwise."""
    found = _BY_KEY.get(value.strip().lower())
    if found is None:
        raise ValidationFailed(
            f"target_language: unknown language {value!r}; use an ISO 639-1 code or an English "
            f"name, one of: {', '.join(lang.code for lang in LANGUAGES)}",
            param="target_language")
    return found
