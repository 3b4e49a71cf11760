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

#: The exit status when settings or a config file stop startup.
CANNOT_START = 2


def _patch_gevent_first() -> None:
    # The one read of the environment outside the settings loader: gevent must patch the
    # standard library before anything else imports it.
    if (os.environ.get("LLM_ROUTER_SERVER_TYPE", "").strip().lower() == "gunicorn"
            and os.environ.get("LLM_ROUTER_SERVER_WORKER_CLASS", "").strip() == "gevent"):
        from gevent import monkey

        monkey.patch_all()


def main() -> int:
    _patch_gevent_first()
    from llm_router_api.auth.keys import KeyRing, KeysFileError
    from llm_router_api.core.config import ConfigError, load_models_config
    from llm_router_api.core.prompts import PromptError, load_prompt_library
    from llm_router_api.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        models = load_models_config(settings.models_config, settings.environ)
        keys = KeyRing.from_settings(settings)
        load_prompt_library(settings)
    except (SettingsError, ConfigError, KeysFileError, PromptError) as exc:
        print(f"llm-router: cannot start: {exc}", file=sys.stderr)
        return CANNOT_START
    if exposed(settings.server_host, keys.enabled, any(p.token for _, p in models.providers())):
        print(f"llm-router: WARNING: listening on {settings.server_host} with no API keys "
              "while providers have tokens: anyone who reaches the port can spend them "
              "(set LLM_ROUTER_API_KEYS)", file=sys.stderr)
    from llm_router_api.web.servers import serve

    return serve(settings)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def exposed(host: str, keys_enabled: bool, providers_have_tokens: bool) -> bool:
    """Startup warns when the gateway binds beyond loopback, open, in front of paid providers."""
    return host not in LOOPBACK and not host.startswith("127.") and not keys_enabled \
        and providers_have_tokens


if __name__ == "__main__":
    sys.exit(main())
