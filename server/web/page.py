"""The page's own files (kiosk/): only those, with the Content-Security-Policy; '/' is index.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tornado.web

from server.web.base import SECURITY_HEADERS

KIOSK_DIR = Path(__file__).resolve().parents[2] / "kiosk"

# Everything the page needs is served from here; nothing inline, nothing from elsewhere.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)


# The files the page loads, by folder of kiosk/ ("" is the top) and extension. Everything else under kiosk/
# (the launcher and its Python, READMEs, dotfiles, editor backups) is 404: the web root is not a file share.
PAGE_FILES: dict[str, frozenset[str]] = {
    "": frozenset({".html"}),
    "css": frozenset({".css"}),
    "js": frozenset({".js", ".mjs"}),
    "icons": frozenset({".svg"}),
    "fonts": frozenset({".woff2", ".woff", ".ttf", ".otf"}),
}


def is_page_file(url_path: str) -> bool:
    """Is kiosk/<url_path> one of the page's own files? "" (the page itself, index.html) is."""
    if url_path == "":
        return True
    parts = url_path.split("/")
    if any(part.startswith(".") or part == "" for part in parts):
        return False  # dotfiles and dot-folders (.git, .env, ..), and empty segments
    folder = parts[0] if len(parts) > 1 else ""
    name = parts[-1]
    extension = name[name.rfind(".") :].lower() if "." in name else ""
    return extension in PAGE_FILES.get(folder, frozenset())


class PageStaticHandler(tornado.web.StaticFileHandler):
    """kiosk/ files with the CSP; '/' is index.html. Only PAGE_FILES are served; Tornado's
    validate_absolute_path keeps requests in the root."""

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        self.set_header("Content-Security-Policy", CSP)
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def parse_url_path(self, url_path: str) -> str:
        # A NUL byte makes os.path.realpath raise ValueError (a 500 in Tornado): refuse it up front.
        if "\x00" in url_path or "\\" in url_path:
            raise tornado.web.HTTPError(400)
        if not is_page_file(url_path):
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)

    def set_extra_headers(self, path: str) -> None:
        # The wall must pick up a new version after an update: revalidate every time (cheap on loopback).
        self.set_header("Cache-Control", "no-cache")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")
