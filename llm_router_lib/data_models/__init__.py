"""Request models, defined once and used by the service to validate and by the client to send."""
