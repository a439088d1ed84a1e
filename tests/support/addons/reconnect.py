"""A user's addon (`-s`) for the tests: points every server connection at the address in
$TEST_RECONNECT_TO (host:port), past the request hooks' checks."""

import os

from mitmproxy.proxy import server_hooks


def server_connect(data: server_hooks.ServerConnectionHookData) -> None:
    host, _, port = os.environ["TEST_RECONNECT_TO"].partition(":")
    data.server.address = (host, int(port))
