"""A raw HTTP/2 client over TLS for hostile-input tests: it sends header fields as given (any case,
any bytes, fields a strict client would refuse to send) and reports a reset or a closed
connection instead of raising, so a test can say which one it expects."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions


@dataclass
class H2Answer:
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    reset: bool = False  # the stream was reset (RST_STREAM)
    closed: bool = False  # the connection ended (GOAWAY or close) before the stream did

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == wanted:
                return v.decode("latin-1")
        return None

    @property
    def outcome(self) -> int | str:
        """The status, or "reset" / "close" when no answer came."""
        if self.status is not None:
            return self.status
        return "reset" if self.reset else "close"


def h2_request(port: int, context: ssl.SSLContext, method: bytes, path: bytes,
               headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b"",
               authority: bytes = b"127.0.0.1", timeout: float = 10.0) -> H2Answer:
    """One request on a new HTTP/2 connection to 127.0.0.1:`port`, bounded by `timeout`."""
    context.set_alpn_protocols(["h2"])
    config = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                       validate_outbound_headers=False,
                                       normalize_outbound_headers=False,
                                       validate_inbound_headers=False)
    conn = h2.connection.H2Connection(config)
    answer = H2Answer()
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        assert sock.selected_alpn_protocol() == "h2"
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        fields = [(b":method", method), (b":scheme", b"https"), (b":authority", authority),
                  (b":path", path), *(headers or [])]
        conn.send_headers(stream, fields, end_stream=not body)
        if body:
            conn.send_data(stream, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except (TimeoutError, OSError):
                data = b""
            if not data:
                answer.closed = True
                return answer
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                answer.closed = True
                return answer
            for event in events:
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    for k, v in event.headers:
                        if k == b":status":
                            answer.status = int(v)
                        else:
                            answer.headers.append((k, v))
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                    answer.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                    answer.reset = True
                    return answer
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    return answer
                elif isinstance(event, h2.events.ConnectionTerminated):
                    answer.closed = True
                    return answer
            pending = conn.data_to_send()
            if pending:
                sock.sendall(pending)
    answer.closed = True
    return answer
