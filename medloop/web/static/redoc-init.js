// Redoc over this server's OpenAPI document; no web fonts are fetched.
Redoc.init("/api/v1/openapi.json", { hideDownloadButton: false, disableSearch: false }, document.getElementById("redoc"));
