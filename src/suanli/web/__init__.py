"""The web portal (server-rendered pages for every role, and the city dashboard).

Pages call the same services as the API, with the same tenant isolation; they hold no logic of
their own. Sessions are API tokens in an HttpOnly, SameSite cookie; every form carries a CSRF
token; scripts come only from suanli's own /static (no inline script, no CDN)."""

from .app import install, unavailable_page

__all__ = ["install", "unavailable_page"]
