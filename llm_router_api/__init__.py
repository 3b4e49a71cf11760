"""llm-router's REST service. Build it with ``llm_router_api.web.app.create_app(settings)``."""

__version__ = "0.1.0"
