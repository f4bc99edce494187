"""FastAPI app: REST API, auth, audit and the review dashboard."""
