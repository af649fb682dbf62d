"""Who may use the reading room, without a browser: the token, the Host check, the cookie and the one-tab rule.

The guard is tested on a small aiohttp application of its own (a page, a script and a websocket), then once
on ``pancreasseg review`` itself, started as a subprocess and asked with plain HTTP: off loopback a request
needs the token, on loopback the Host header must name a loopback address, and no file outside the
application's own is served.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trame_slicer", reason="the reading room needs trame-slicer (pip install -e \".[review]\")")

import review_browser as rb  # noqa: E402
from aiohttp import WSServerHandshakeError, web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from PancreasSegWeb import access  # noqa: E402
from PancreasSegWeb.access import COOKIE, DENIED_TEXT, AccessGuard, is_loopback, new_token  # noqa: E402
from PancreasSegWeb.ui import model_note  # noqa: E402

TOKEN = new_token()
#: Bound of every wait in these tests (s).
WAIT = 10.0


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LocalHost"])
def test_loopback_addresses_are_loopback(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.5", "evil.example", "localhost.evil.example",
                                  "127.0.0.1.evil.example", ""])
def test_other_addresses_and_names_are_not_loopback(host):
    assert not is_loopback(host)


def test_tokens_are_long_and_new_every_time():
    tokens = {new_token() for _ in range(20)}
    assert len(tokens) == 20 and all(len(token) >= 43 for token in tokens)


@pytest.mark.parametrize("header", ["127.0.0.1:8080", "127.0.0.1", "localhost:8080", "[::1]:8080", "[::1]", "::1"])
def test_on_loopback_a_host_header_naming_loopback_is_allowed_without_the_token(header):
    assert AccessGuard(TOKEN, require_token=False).allowed(None, None, header)


@pytest.mark.parametrize("header", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example:8080",
                                    "localhost.evil.example", "10.1.2.3:8080", ""])
def test_on_loopback_a_host_header_naming_anything_else_is_refused_even_with_the_token(header):
    assert not AccessGuard(TOKEN, require_token=False).allowed(TOKEN, TOKEN, header)


@pytest.mark.parametrize(("query", "cookie"), [(TOKEN, None), (None, TOKEN), ("wrong", TOKEN), (TOKEN, "wrong")])
def test_off_loopback_the_token_in_the_address_or_the_cookie_lets_a_request_in(query, cookie):
    assert AccessGuard(TOKEN, require_token=True).allowed(query, cookie, "evil.example:8080")


@pytest.mark.parametrize(("query", "cookie"), [(None, None), ("", ""), ("wrong", None), (None, TOKEN[:-1]),
                                               (TOKEN + "x", None), ("é" * 43, None), (None, "\udcff")])
def test_off_loopback_a_missing_or_wrong_token_is_refused(query, cookie):
    assert not AccessGuard(TOKEN, require_token=True).allowed(query, cookie, "10.1.2.3:8080")


def test_the_locked_page_says_who_has_the_room_open_and_escapes_it():
    page = AccessGuard(TOKEN, False, describe_holder=lambda: "dr-a, <script>x()</script>.nii.gz").locked_page()
    assert 'id="locked"' in page and "open in another tab or window (dr-a, &lt;script&gt;" in page
    assert "<script>" not in page
    assert "window. Close it" in AccessGuard(TOKEN, False).locked_page()


def test_the_denied_text_says_what_to_open():
    assert "access token" in DENIED_TEXT and "?token=" in DENIED_TEXT


# -- the guard as middleware of a small application ----------------------------------------------------------


async def _page(request):
    return web.Response(text="<html>the page</html>", content_type="text/html")


async def _script(request):
    return web.Response(text="// the page's script")


async def _socket(request):
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    async for _ in socket:
        pass
    return socket


def _run(guard: AccessGuard, check):
    """Run ``await check(client)`` against a page, a script and a websocket behind ``guard``."""

    async def main():
        app = web.Application(middlewares=[guard.middleware()])
        app.router.add_get("/", _page)
        app.router.add_get("/index.html", _page)
        app.router.add_get("/app.js", _script)
        app.router.add_get("/ws", _socket)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            return await check(client)

    return asyncio.run(main())


async def _until(condition, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {WAIT:g} s: {what}")
        await asyncio.sleep(0.01)


def test_off_loopback_the_page_with_the_token_sets_an_http_only_same_site_cookie_that_lets_the_rest_in():
    async def check(client):
        denied = await client.get("/")
        assert denied.status == 403 and await denied.text() == DENIED_TEXT
        for path in ("/app.js", "/index.html"):
            assert (await client.get(path, headers={"Cookie": f"{COOKIE}=wrong"})).status == 403
        page = await client.get("/", params={"token": TOKEN})
        assert page.status == 200 and "the page" in await page.text()
        cookie = page.cookies[COOKIE]
        assert cookie.value == TOKEN and cookie["httponly"] and cookie["samesite"] == "Strict"
        assert cookie["path"] == "/"
        client.session.cookie_jar.clear()  # from here on, each request carries the cookie it says
        script = await client.get("/app.js", headers={"Cookie": f"{COOKIE}={TOKEN}"})
        assert script.status == 200 and COOKIE not in script.cookies  # the cookie is set by the address only
        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect("/ws")
        assert refused.value.status == 403
        socket = await client.ws_connect("/ws", headers={"Cookie": f"{COOKIE}={TOKEN}"})
        await socket.close()
        assert (await client.get("/", params={"token": "é"})).status == 403

    _run(AccessGuard(TOKEN, require_token=True), check)


def test_on_loopback_no_cookie_is_set_and_a_foreign_host_header_is_refused():
    async def check(client):
        page = await client.get("/")
        assert page.status == 200 and COOKIE not in page.cookies
        assert COOKIE not in (await client.get("/", params={"token": TOKEN})).cookies
        foreign = await client.get("/", headers={"Host": "evil.example"})
        assert foreign.status == 403 and await foreign.text() == DENIED_TEXT
        assert (await client.get("/app.js", headers={"Host": f"evil.example:{client.port}"})).status == 403
        assert (await client.get("/app.js", headers={"Host": f"localhost:{client.port}"})).status == 200

    _run(AccessGuard(TOKEN, require_token=False), check)


def test_while_a_page_is_connected_another_tab_gets_the_locked_page(monkeypatch):
    monkeypatch.setattr(access, "HANDOVER_SECONDS", 0.2)
    guard = AccessGuard(TOKEN, require_token=False, describe_holder=lambda: "dr-a, case_0001")

    async def check(client):
        first = await client.ws_connect("/ws")
        await _until(lambda: guard.connections == 1, "the first page is connected")
        for path in ("/", "/index.html"):
            locked = await client.get(path)
            assert locked.status == 409 and "open in another tab or window (dr-a, case_0001)" in await locked.text()
        assert (await client.get("/app.js")).status == 200  # the page's files are not what is locked
        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect("/ws")
        assert refused.value.status == 409
        await first.close()
        await _until(lambda: guard.connections == 0, "the first page is gone")
        assert (await client.get("/")).status == 200

    _run(guard, check)


def test_a_reload_gets_the_page_once_the_old_one_goes(monkeypatch):
    monkeypatch.setattr(access, "HANDOVER_SECONDS", WAIT)
    guard = AccessGuard(TOKEN, require_token=False)

    async def check(client):
        old = await client.ws_connect("/ws")
        await _until(lambda: guard.connections == 1, "the old page is connected")
        reload = asyncio.ensure_future(client.get("/"))
        await old.close()
        assert (await asyncio.wait_for(reload, WAIT)).status == 200

    _run(guard, check)


# -- what the page's header says of the model ----------------------------------------------------------------


def test_the_header_says_the_bundled_model_is_trained_on_synthetic_phantoms_only():
    from PancreasSegLib.constants import default_model

    note = model_note(default_model())
    assert note.startswith("model pancreas-phantom") and note.endswith("trained on synthetic phantoms only")


def test_the_header_names_another_model_without_claiming_phantoms(tmp_path):
    bundle = tmp_path / "my-model"
    bundle.mkdir()
    (bundle / "model.json").write_text(json.dumps({"name": "pancreas-ct-v2", "description": "Trained on CT."}))
    assert model_note(bundle) == "model pancreas-ct-v2"
    assert model_note(tmp_path / "no-bundle") == "model no-bundle"


# -- `pancreasseg review` itself, asked with plain HTTP -----------------------------------------------------------


class _Room(rb.ReviewServer):
    """``pancreasseg review`` on ``host`` as the browser test runs it; :meth:`wait` for its address."""

    def __init__(self, cases: Path, dataset: Path, log: Path, host: str | None) -> None:
        env = dict(os.environ, VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(rb.ROOT), env.get("PYTHONPATH")]))
        self.port, self.log_path = rb.free_port(), log
        self._log = open(log, "w", encoding="utf-8")  # noqa: SIM115 (open for the server's whole life)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "PancreasSegLib", "review", str(cases), "--dataset", str(dataset),
             "--reviewer", "dr-access", "--port", str(self.port), "--device", "cpu",
             *(["--host", host] if host else [])],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(rb.ROOT), start_new_session=True)

    def wait(self) -> _Room:
        self.url = self._wait_for_url()
        return self

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, str]:
        """GET ``path`` as sent (no normalising of ``..``) from 127.0.0.1: (status, headers, body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=rb.STEP_TIMEOUT)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode("utf-8", "replace")
        finally:
            connection.close()


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    """Two reading rooms started together: one on 0.0.0.0 (token needed), one on the default 127.0.0.1."""
    folder = tmp_path_factory.mktemp("rooms")
    cases = rb.write_cases(folder / "cases", seeds=(5,))
    started = [_Room(cases, folder / f"Dataset50{n}_Curated", folder / f"server{n}.log", host)
               for n, host in ((1, "0.0.0.0"), (2, None))]
    try:
        yield {"open": started[0].wait(), "loopback": started[1].wait(), "cases": cases, "folder": folder}
    finally:
        for room in started:
            room.stop()


def _token(room: _Room) -> str:
    match = re.search(r"\?token=([\w-]+)$", room.url)
    assert match, room.url
    assert f"access token (needed on every connection): {match.group(1)}" in room.log_path.read_text()
    return match.group(1)


def test_off_loopback_the_room_prints_an_address_with_the_token_and_refuses_requests_without_it(rooms):
    room = rooms["open"]
    assert room.url.startswith(f"http://0.0.0.0:{room.port}/?token=")
    for path in ("/", "/index.html", "/?token=wrong", "/index.html?token=" + _token(room)[:-1], "/?token=%C3%A9"):
        status, _, body = room.get(path)
        assert (status, body) == (403, DENIED_TEXT), path
    status, _, body = room.get("/index.html", headers={"Cookie": f"{COOKIE}=wrong"})
    assert (status, body) == (403, DENIED_TEXT)


def test_off_loopback_the_address_with_the_token_serves_the_page_and_sets_the_cookie(rooms):
    room, token = rooms["open"], _token(rooms["open"])
    status, headers, _ = room.get(f"/?token={token}")
    assert status == 302 and headers["Location"] == f"index.html?token={token}"  # trame's own redirect
    status, headers, body = room.get(f"/index.html?token={token}")
    assert status == 200 and "<html" in body
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}={token};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, _, again = room.get("/index.html", headers={"Cookie": f"{COOKIE}={token}"})
    assert status == 200 and again == body
    script = re.search(r'src="\.?/?([^"]+\.js)"', body)
    assert script, body
    assert room.get("/" + script.group(1))[0] == 403
    assert room.get("/" + script.group(1), headers={"Cookie": f"{COOKIE}={token}"})[0] == 200


def test_the_room_serves_no_file_outside_its_own(rooms):
    room, cases = rooms["open"], rooms["cases"]
    cookie = {"Cookie": f"{COOKIE}={_token(room)}"}
    ct = next(cases.iterdir()).name
    paths = ["/etc/passwd", "/../../../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
             "/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "/static/../../../../../../etc/passwd", f"/{ct}",
             f"/{cases.name}/{ct}", f"/../{cases.name}/{ct}", "/Dataset501_Curated/dataset.json",
             "/../Dataset501_Curated/dataset.json", "/server1.log", "/../server1.log"]
    for path in paths:
        status, _, body = room.get(path, headers=cookie)
        assert status in (400, 403, 404), (path, status)
        assert "root:" not in body and "dr-access" not in body and '"labels"' not in body, path


def test_on_loopback_the_room_needs_no_token_but_refuses_a_foreign_host_header(rooms):
    room = rooms["loopback"]
    assert room.url == f"http://127.0.0.1:{room.port}/"
    assert "access token" not in room.log_path.read_text()
    for host in (f"127.0.0.1:{room.port}", f"localhost:{room.port}"):
        status, headers, body = room.get("/index.html", headers={"Host": host})
        assert status == 200 and "<html" in body and "Set-Cookie" not in headers, host
    for host in ("evil.example", f"evil.example:{room.port}", f"127.0.0.1.evil.example:{room.port}"):
        status, _, body = room.get("/index.html", headers={"Host": host})
        assert (status, body) == (403, DENIED_TEXT), host
