"""llm-router's client library and the pydantic data models shared with the service."""

__version__ = "0.1.0"
