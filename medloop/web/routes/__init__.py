"""HTTP routes: `api_*` under /api/v1 (JSON), `pages_*` for the dashboard (HTML)."""
