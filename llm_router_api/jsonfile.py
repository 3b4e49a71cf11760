"""Reading the service's own JSON files (models config, keys file) with one-line errors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def read_json(file: Path, error: type[Exception]) -> Any:
    """The parsed file; ``error`` names the file and where it is unreadable or not JSON."""
    return read_json_digest(file, error)[0]


def read_json_digest(file: Path, error: type[Exception]) -> tuple[Any, str]:
    """The parsed file and the SHA-256 of the very bytes parsed."""
    try:
        data = file.read_bytes()
        return json.loads(data.decode("utf-8")), hashlib.sha256(data).hexdigest()
    except OSError as exc:
        raise error(f"{file}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{file}: not UTF-8 text: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{file}: line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def json_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a JSON path suffix: ``.providers[0].api_host``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
