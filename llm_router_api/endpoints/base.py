"""``EndpointI``: the base of every endpoint, and ``EndpointAutoLoader``, which finds them.

An endpoint is a small class: its paths, methods, caller protocol and request model are class
attributes; ``handle`` validates (via ``parse``), asks ``ModelHandler`` or the parts
(``core.assemble.Parts``), and returns a ``Reply`` or a JSON-able value. The web layer turns
that into a response, and any ``RouterError`` into the endpoint protocol's error shape. Paths
may contain ``{prefix}`` (``LLM_ROUTER_EP_PREFIX``) and Flask converters such as
``<path:model_id>``.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from llm_router_api.auth.access import Access
from llm_router_api.core.assemble import Parts
from llm_router_api.core.generation import Generation
from llm_router_api.core.model_handler import Reply
from llm_router_api.errors import ValidationFailed, echo
from llm_router_api.formats.caller import CallerFormat
from llm_router_api.formats.registry import caller
from llm_router_api.schemas.calls import Protocol
from llm_router_api.settings import Settings

M = TypeVar("M", bound=BaseModel)
#: The header naming a caller's session (``cache_aware`` session affinity).
SESSION_HEADER = "x-session-id"
MAX_SESSION = 256


@dataclass(frozen=True)
class Incoming:
    """The parts of an HTTP request an endpoint needs, free of Flask."""

    body: Any
    headers: Mapping[str, str]
    path_params: Mapping[str, str]
    request_id: str
    #: The configuration this request runs on, from start to end (its last byte).
    config: Generation
    #: Where a model call reports the tokens it used (the caller key's budget), if anywhere.
    on_usage: Callable[[int], None] | None = None
    #: True once the caller has closed its connection (``None``: the server cannot tell).
    client_gone: Callable[[], bool] | None = None
    #: Whether the caller came over TLS (directly or per ``X-Forwarded-Proto``): secure cookies.
    secure: bool = False
    #: The caller's key id ('' when auth is off): scopes what the caller stored.
    key_id: str = ""

    @property
    def session(self) -> str:
        """The ``X-Session-ID`` header ('' when absent), at most ``MAX_SESSION`` characters."""
        for name, value in self.headers.items():
            if name.lower() == SESSION_HEADER:
                return value.strip()[:MAX_SESSION]
        return ""


class EndpointI(ABC):
    paths: ClassVar[tuple[str, ...]] = ()
    methods: ClassVar[tuple[str, ...]] = ("POST",)
    protocol: ClassVar[Protocol] = Protocol.OPENAI
    request_model: ClassVar[type[BaseModel] | None] = None
    #: Who may call it (``auth/access.py``).
    access: ClassVar[Access] = Access.KEY
    #: Built-in utilities need the prompt library; they are not served with LLM_ROUTER_MINIMUM.
    needs_prompts: ClassVar[bool] = False
    #: Only registered when an admin token is configured.
    admin_only: ClassVar[bool] = False
    #: Whether a POST/PUT/PATCH carries a JSON body to read (False: none needed, none read).
    takes_body: ClassVar[bool] = True
    #: Whether a call counts against the key's request / concurrency limits (False: a cheap
    #: side call such as count_tokens; the key must still be allowed the model).
    generates: ClassVar[bool] = True

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.settings = parts.settings

    @property
    def caller_format(self) -> CallerFormat:
        """The format of this endpoint's ``protocol`` (``formats/registry.py``)."""
        return caller(self.protocol)

    def check_access(self, headers: Mapping[str, str]) -> None:  # noqa: B027 - a hook
        """Raise when the caller may not call this endpoint; runs before the body is read.
        Default: nothing (``access`` and the guard decide)."""

    @abstractmethod
    def handle(self, incoming: Incoming) -> Reply | Any:
        """Answer one request."""

    def parse(self, incoming: Incoming, model: type[M] | None = None) -> M:
        """Validate the JSON body; the 400 names the first failing field."""
        schema = model or self.request_model
        assert schema is not None, f"{type(self).__name__} has no request model"
        try:
            return schema.model_validate(incoming.body)  # type: ignore[return-value]
        except ValidationError as exc:
            raise validation_error(exc) from None

    @classmethod
    def routes(cls, prefix: str) -> list[str]:
        routes = [path.replace("{prefix}", prefix) or "/" for path in cls.paths]
        return list(dict.fromkeys(routes))


def validation_error(exc: ValidationError) -> ValidationFailed:
    """A 400 naming the failing field: of a value that matched no member of a union
    (``str | list[Block]``), the deepest failure names the field that was wrong."""
    errors = exc.errors()
    paths = [field_path(e["loc"]) for e in errors]
    index = max(range(len(errors)), key=lambda i: (paths[i].count(".") + 1) if paths[i] else 0)
    path = echo(paths[index])  # a path may hold a caller's dict key
    return ValidationFailed(f"{path}: {echo(errors[index]['msg'])}", param=path,
                            detail=[{"loc": e["loc"], "msg": e["msg"]} for e in errors])


def field_path(loc: tuple[int | str, ...]) -> str:
    """``messages.0.content.3.text``: pydantic's location without the names it gives the
    members of a union it tried (``str``, ``list[AnthropicBlock]``)."""
    parts = [str(p) for p in loc if isinstance(p, int) or not _union_member(p)]
    return ".".join(parts) or "body"


def _union_member(part: str) -> bool:
    return part in UNION_TAGS or ("[" in part and part.endswith("]"))


UNION_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "bytes"})


class EndpointAutoLoader:
    """Imports every module of ``llm_router_api.endpoints`` and yields every concrete endpoint."""

    def __init__(self, package: str = "llm_router_api.endpoints") -> None:
        self.package = package

    def discover(self) -> list[type[EndpointI]]:
        root = importlib.import_module(self.package)
        for info in pkgutil.walk_packages(root.__path__, prefix=self.package + "."):
            importlib.import_module(info.name)
        return sorted(_concrete(EndpointI), key=lambda cls: (cls.__module__, cls.__name__))

    def endpoints(self, settings: Settings) -> Iterator[type[EndpointI]]:
        """The endpoints this configuration serves."""
        for cls in self.discover():
            if cls.needs_prompts and settings.minimum:
                continue
            if cls.admin_only and not settings.admin_token:
                continue
            yield cls


def _concrete(base: type[Any]) -> set[type[EndpointI]]:
    found: set[type[EndpointI]] = set()
    for sub in base.__subclasses__():
        if not getattr(sub, "__abstractmethods__", None) and sub.paths:
            found.add(sub)
        found |= _concrete(sub)
    return found
