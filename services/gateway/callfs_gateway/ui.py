"""The web file browser: ``/ui/`` serves its page and files from the package, and ``/``
leads there.

The page holds no data and no key (it asks for one and keeps it in the tab), so it is
served to anyone; everything it shows comes from the API with the user's key. Its
Content-Security-Policy (:data:`UI_CSP`) allows only the gateway's own scripts, styles
and requests, nothing inline; the API's routes keep their strict one.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import RedirectResponse, Response

UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page's policy. ``form-action 'none'``: the sign-in form is the script's to handle,
so a key can never leave in a URL even if the script fails."""

ASSETS = {
    "app.js": "text/javascript",
    "api.js": "text/javascript",
    "format.js": "text/javascript",
    "style.css": "text/css",
}
"""The page's files besides ``index.html``, with their media types; nothing else is served."""


def _read(name: str) -> bytes:
    return resources.files("callfs_gateway").joinpath("static", name).read_bytes()


def ui_router() -> APIRouter:
    """``/`` and ``/ui`` (redirects), ``/ui/`` (the page) and ``/ui/<asset>``.

    The files are read once, here: a request never touches the disk.
    """
    page = _read("index.html")
    assets = {name: _read(name) for name in ASSETS}
    ui = APIRouter(include_in_schema=False)

    # Relative redirects: the page works wherever the base URL puts it (an ingress prefix).
    @ui.api_route("/", methods=["GET", "HEAD"])
    async def root() -> RedirectResponse:
        return RedirectResponse("ui/", status_code=307)

    @ui.api_route("/ui", methods=["GET", "HEAD"])
    async def without_slash() -> RedirectResponse:
        return RedirectResponse("ui/", status_code=307)

    @ui.api_route("/ui/", methods=["GET", "HEAD"])
    async def index() -> Response:
        # Its own policy, in place of the API's (EdgeMiddleware keeps a response's own).
        return Response(
            page,
            media_type="text/html",
            headers={"Content-Security-Policy": UI_CSP, "Cache-Control": "no-cache"},
        )

    @ui.api_route("/ui/{asset}", methods=["GET", "HEAD"])
    async def asset(asset: str) -> Response:
        if asset not in assets:
            raise HTTPException(status_code=404)
        return Response(
            assets[asset], media_type=ASSETS[asset], headers={"Cache-Control": "no-cache"}
        )

    return ui
