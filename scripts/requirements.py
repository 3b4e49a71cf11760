"""Prints the requirements of this project for the given extras, one per line, from pyproject.toml.

    python scripts/requirements.py api,metrics > /tmp/requirements.txt
    pip install -r /tmp/requirements.txt -c constraints.txt

The Dockerfile uses it to install the dependencies in their own layer, before the source is
copied, so a code change does not reinstall them. Standard library only (Python 3.11+).
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements(extras: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    """The core dependencies plus those of each named extra (an unknown extra is an error)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [name for name in extras if name not in optional]
    if unknown:
        raise SystemExit(f"unknown extra(s) {', '.join(unknown)}; known: {', '.join(optional)}")
    return list(project["dependencies"]) + [req for name in extras for req in optional[name]]


if __name__ == "__main__":
    names = [n for n in (sys.argv[1] if len(sys.argv) > 1 else "").split(",") if n]
    print("\n".join(requirements(names)))
