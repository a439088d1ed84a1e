"""mitmweb under `--web`, reached as a person reaches it: through the URL the start-up line gives.
mitmproxy 12's mitmweb answers 403 without its token, which that URL carries (`?token=`) and
which, once opened, it keeps as a cookie; mitmproxy 11's needs none."""

from __future__ import annotations

import base64
import http.client
import http.cookiejar
import json
import os
import re
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from support.proxy import Proxy

INSPECT = re.compile(r", inspect at (\S+?)(?:,\s|$)")
# The XSRF cookie a POST's X-XSRFToken must match: tornado's default name (mitmproxy 11), 12's.
XSRF_COOKIES = ("_xsrf", "_mitmproxy_xsrf")


def inspect_url(proxy: Proxy) -> str:
    """mitmweb's URL as the proxy's start-up line gives it."""
    for line in proxy.lines:
        found = INSPECT.search(line)
        if found:
            return found.group(1)
    raise AssertionError("no `inspect at` URL in the proxy's output:\n" + proxy.output)


class WebSession:
    """A browser's session with mitmweb: the start-up URL opened once, its cookies (mitmproxy
    12's auth cookie, the XSRF cookie) sent with every request after."""

    def __init__(self, proxy: Proxy) -> None:
        self.url = inspect_url(proxy)
        parts = urlsplit(self.url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.opener.open(self.url, timeout=10).read()

    def xsrf(self) -> str:
        """The token a POST carries, from its cookie. mitmproxy 11's page sets that cookie;
        12's only the WebSocket its page opens (/updates), which is opened here as the page
        does, just for the handshake's cookie."""
        if not self._xsrf_cookie():
            self._open_updates()
        value = self._xsrf_cookie()
        assert value is not None, [c.name for c in self.jar]
        return value

    def _xsrf_cookie(self) -> str | None:
        return next((c.value for c in self.jar if c.name in XSRF_COOKIES and c.value), None)

    def _open_updates(self) -> None:
        request = urllib.request.Request(self.base + "/updates", headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
        self.jar.add_cookie_header(request)  # the auth cookie
        parts = urlsplit(self.base)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        try:
            connection.request("GET", "/updates", headers=dict(request.header_items()))
            response = connection.getresponse()
            assert response.status == 101, (response.status, response.read())
            self.jar.extract_cookies(response, request)
        finally:
            connection.close()

    def get_json(self, path: str) -> Any:
        with self.opener.open(self.base + path, timeout=10) as r:
            return json.load(r)

    def post_json(self, path: str, payload: object) -> Any:
        request = urllib.request.Request(
            self.base + path, data=json.dumps(payload).encode(), method="POST",
            headers={"X-XSRFToken": self.xsrf(), "Content-Type": "application/json"})
        with self.opener.open(request, timeout=10) as r:
            return json.load(r)
