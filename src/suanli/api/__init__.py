"""REST API (FastAPI): thin routes that parse, call a service, and render."""
