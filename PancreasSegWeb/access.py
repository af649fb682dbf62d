"""Who may use the reading room: the access token, the Host check and the one-tab rule.

The reading room listens on the loopback address unless told otherwise. Off loopback every request must
carry the token printed at start: the page's address holds it (``/?token=...``), the answer sets it as an
HttpOnly, same-site cookie, and every later request (the page's files, the websocket) is refused without
it. On loopback the token is not needed, but the Host header must name a loopback address, so that a web
page elsewhere cannot reach the server through a DNS name that points at 127.0.0.1.

One page at a time: trame shares one state between all the pages connected to a server, so a second tab
would show (and edit) the same case. While a page is connected, another one gets a short page that says
the reading room is open in another tab.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import ipaddress
import secrets
from collections.abc import Callable

COOKIE = "pancreasseg_review"
#: How long a new page waits for the previous one to go (a reload closes the old websocket a bit later).
HANDOVER_SECONDS = 3.0
LOOPBACK_NAMES = ("localhost",)

LOCKED_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>PancreasSeg reading room</title></head>
<body style="font-family: sans-serif; margin: 3em"><h2>PancreasSeg reading room</h2>
<p id="locked">The reading room is open in another tab or window{who}. Close it there, then reload this page.</p>
</body></html>"""
DENIED_TEXT = ("PancreasSeg reading room: this address needs the access token. Open the address printed when "
               "`pancreasseg review` started (it ends in ?token=...).\n")


def new_token() -> str:
    """A fresh random access token (URL-safe, 32 bytes of entropy)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("10.1.2.3")
    (True, True, False, False)
    """
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host of a Host header, without the port (``[::1]:8080`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class AccessGuard:
    """The checks of every request, as an aiohttp middleware (:meth:`middleware`).

    Args:
        token: the access token.
        require_token: True when the server listens beyond loopback.
        describe_holder: ``describe_holder() -> str`` says who has the reading room open (for the locked page).
    """

    def __init__(self, token: str, require_token: bool, describe_holder: Callable[[], str] | None = None) -> None:
        self.token, self.require_token = token, require_token
        self.describe_holder = describe_holder or (lambda: "")
        #: Websocket connections open now (a page counts while its websocket is open).
        self.connections = 0

    def allowed(self, query_token: str | None, cookie_token: str | None, host_header: str) -> bool:
        """Whether a request with this ``?token=``, cookie and Host header may go on."""
        if not self.require_token:
            return is_loopback(_host_name(host_header or ""))
        # As bytes: compare_digest refuses str with non-ASCII characters, which anyone can put in the address.
        expected = self.token.encode("utf-8")
        return any(value is not None and hmac.compare_digest(value.encode("utf-8", "replace"), expected)
                   for value in (query_token, cookie_token))

    def middleware(self):
        """The aiohttp middleware doing the checks (add it before the server starts)."""
        from aiohttp import web

        @web.middleware
        async def guard(request, handler):
            if not self.allowed(request.query.get("token"), request.cookies.get(COOKIE), request.host):
                return web.Response(status=403, text=DENIED_TEXT)
            is_socket = request.headers.get("Upgrade", "").lower() == "websocket"
            if (is_socket or request.path in ("/", "/index.html")) and not await self._free():
                return web.Response(status=409, content_type="text/html", text=self.locked_page())
            if not is_socket:
                response = await handler(request)
                if request.query.get("token") and self.require_token:
                    response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
                return response
            self.connections += 1
            try:
                return await handler(request)
            finally:
                self.connections -= 1

        return guard

    def locked_page(self) -> str:
        """The page a second tab gets; who has the reading room open is escaped (a case title is a file name)."""
        who = self.describe_holder()
        return LOCKED_PAGE.format(who=f" ({html.escape(who)})" if who else "")

    async def _free(self) -> bool:
        """True when no page is connected, waiting a moment for a page that is just going."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HANDOVER_SECONDS
        while self.connections > 0 and loop.time() < deadline:
            await asyncio.sleep(0.1)
        return self.connections == 0
