"""``llm-router``: the operator's command line (console script; its commands need ``.[api]``).

``main`` is the console script's entry point; the commands live in ``cli.app``.
"""

from __future__ import annotations

import sys

PROG = "llm-router"


def main() -> None:
    try:
        import click  # noqa: F401 - only checks that the api extra is installed
    except ImportError:
        print(f"{PROG}: the command line needs the api extra: pip install 'llm-router[api]'",
              file=sys.stderr)
        sys.exit(1)
    from llm_router_api.cli.app import cli

    cli(prog_name=PROG)
