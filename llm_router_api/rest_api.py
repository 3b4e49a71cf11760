"""Entry point: ``python -m llm_router_api.rest_api``.

Starts the server named by ``LLM_ROUTER_SERVER_TYPE``: ``flask`` (development), ``gunicorn``
(workers, threads, ``LLM_ROUTER_SERVER_WORKER_CLASS`` such as ``gevent``) or ``waitress``.
Settings and models-config.json are checked here first, so a mistake stops startup with one
clear line. Under gunicorn the app is never built in the master: each worker calls
``create_app`` after fork.
"""

from __future__ import annotations

import os
import sys


def _patch_gevent_first() -> None:
    # The one read of the environment outside the settings loader: gevent must patch the
    # standard library before anything else imports it.
    if (os.environ.get("LLM_ROUTER_SERVER_TYPE", "").strip().lower() == "gunicorn"
            and os.environ.get("LLM_ROUTER_SERVER_WORKER_CLASS", "").strip() == "gevent"):
        from gevent import monkey

        monkey.patch_all()


def main() -> int:
    _patch_gevent_first()
    from llm_router_api.core.config import ConfigError, load_models_config
    from llm_router_api.core.prompts import PromptError, load_prompt_library
    from llm_router_api.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        load_models_config(settings.models_config, settings.environ)
        load_prompt_library(settings)
    except (SettingsError, ConfigError, PromptError) as exc:
        print(f"llm-router: cannot start: {exc}", file=sys.stderr)
        return 2
    from llm_router_api.web.servers import serve

    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
