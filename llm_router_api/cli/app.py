"""The ``llm-router`` commands (click); ``llm_router_api.cli.main`` runs them.

    llm-router serve                  the service (as ``python -m llm_router_api.rest_api``)
    llm-router config validate FILE   check a models-config as startup does
    llm-router config discover [...]  find local LLM servers, print a models-config
    llm-router keys new [...]         a new caller key and its keys-file entry

Exit codes (docs/operations.md): 0 done, 1 invalid or failed, 2 usage error (click's own).
Only click is imported here: ``serve`` must let the launcher apply gevent's monkey-patching
before anything else imports the standard library's networking modules, so every command
imports what it needs when it runs.
"""

from __future__ import annotations

import sys

import click

#: Exit codes every command uses (2, a usage error, is click's).
OK, FAILED = 0, 1

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
def cli() -> None:
    """llm-router: one REST API in front of many LLM servers.

    Exit codes: 0 done, 1 invalid or failed, 2 usage error.
    """


@cli.command()
def serve() -> None:
    """Run the service, configured by the LLM_ROUTER_* environment.

    The same as `python -m llm_router_api.rest_api`: LLM_ROUTER_SERVER_TYPE picks flask,
    gunicorn or waitress. A settings or config mistake prints one line and exits 1.
    """
    from llm_router_api import rest_api

    code = rest_api.main()
    sys.exit(FAILED if code == rest_api.CANNOT_START else code)


@cli.group()
def config() -> None:
    """Check a models-config, or write one for the servers running here."""


@cli.group()
def keys() -> None:
    """Caller API keys (LLM_ROUTER_API_KEYS_FILE)."""


from llm_router_api.cli import config_cmds, keys_cmd  # noqa: E402 - they need the groups

config_cmds.register(config)
keys_cmd.register(keys)
