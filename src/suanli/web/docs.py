"""The API's interactive reference at /docs: Swagger UI, served from suanli's own /static (the
files `make web-assets` copies from swagger-ui-dist), so it works on a network without the
internet, under the portal's Content-Security-Policy (no inline script: the page's start-up is
/static/swagger-init.js). FastAPI's own /docs and /redoc are off (api/app.py)."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

# As the portal's pages, plus what Swagger UI itself needs: inline styles, and data: images (its
# icons). Nothing from anywhere but suanli.
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def docs_page(title: str, openapi_url: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{escape(title)} · API</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">
  <script src="/static/vendor/swagger-ui/swagger-ui-bundle.js" defer></script>
  <script src="/static/swagger-init.js" defer></script>
</head>
<body>
  <div id="swagger-ui" data-openapi="{escape(openapi_url)}"></div>
</body>
</html>
"""


def build_router(title: str, openapi_url: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    html = docs_page(title, openapi_url)

    @router.get("/docs")
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": DOCS_CSP,
                                           "X-Frame-Options": "DENY",
                                           "X-Content-Type-Options": "nosniff",
                                           "Referrer-Policy": "same-origin"})

    return router
