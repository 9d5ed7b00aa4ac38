"""The HTTP API: FastAPI app, routes, dependencies, security."""
