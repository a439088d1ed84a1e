"""TLS for clients: HTTPS on the listening port, HTTP/2 by ALPN, HTTP/1.1 otherwise.

In reverse mode mitmproxy already terminates TLS for a client that opens with a ClientHello
(next_layer puts a ClientTLSLayer under the HTTP layer), with a certificate from its `certs`
option, else one it makes from its own CA; ALPN picks h2 when the client offers it and
mitmproxy's `http2` option is on (its default), whatever the client's order of preference (as
nginx does: some clients list http/1.1 first). This addon turns `cache_tls_cert` and
`cache_tls_key` into `certs`: mitmproxy wants the key and the chain in one PEM file, so the two
are checked and written together to a private temporary file (mode 0600 in a 0700 folder,
removed at shutdown; mitmproxy reads it again when its certificate options change).

With a certificate configured, a cleartext request on the port gets 400 and close, as nginx
answers a plain HTTP request sent to an HTTPS port.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy import ctx, exceptions, http, tls
from mitmproxy.addonmanager import Loader

from caching_proxy.cli import options as opts
from caching_proxy.edge.fail_closed import fail_closed
from caching_proxy.edge.refusals import refusal_response


def load_pair(cert_file: str, key_file: str) -> bytes:
    """The chain of `cert_file` followed by the key of `key_file`, as one PEM, which is what
    mitmproxy's `certs` takes. ValueError, with a one-line reason naming the file, when either
    cannot be read, holds no PEM certificate or unencrypted private key, or they do not match."""
    cert_pem = _read(cert_file, "certificate")
    key_pem = _read(key_file, "key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise ValueError(f"invalid TLS certificate {cert_file}: no PEM certificate in it") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ValueError(f"invalid TLS key {key_file}: it is encrypted; give an unencrypted "
                         "key") from None
    except ValueError:
        raise ValueError(f"invalid TLS key {key_file}: no PEM private key in it") from None
    leaf = chain[0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    own = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf != own:
        raise ValueError(f"TLS certificate {cert_file} does not match the key {key_file} "
                         "(the leaf certificate must come first)")
    pems = [c.public_bytes(serialization.Encoding.PEM) for c in chain]
    key_out = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return b"".join(pems) + key_out


def check_pair(cert_file: str | None, key_file: str | None) -> None:
    """ValueError with a one-line reason unless both or neither are given, and a usable pair."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("--tls-cert and --tls-key must be given together")
    if cert_file and key_file:
        load_pair(cert_file, key_file)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read TLS {what} {path}: {e.strerror or e}") from None


class ClientTls:
    def __init__(self) -> None:
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._on = False

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    def configure(self, updated: set[str]) -> None:
        if not {"cache_tls_cert", "cache_tls_key"} & updated:
            return
        cert, key = ctx.options.cache_tls_cert, ctx.options.cache_tls_key
        try:
            check_pair(cert, key)
            pem = load_pair(cert, key) if cert else b""
        except ValueError as e:
            raise exceptions.OptionsError(
                str(e).replace("--tls-cert and --tls-key", "cache_tls_cert and cache_tls_key")) from None
        if not pem:
            self._on = False
            return
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="caching-proxy-tls-")
        path = os.path.join(self._folder.name, "cert-and-key.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        ctx.options.certs = [f"*={path}"]
        self._on = True

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        client = data.context.client
        if (self._on and ctx.options.http2 and client.alpn is None
                and b"h2" in data.client_hello.alpn_protocols):
            # mitmproxy takes the first HTTP protocol in the client's order, and some clients
            # (httpx) list http/1.1 first; like nginx, prefer h2 whenever it is offered. The
            # client's `alpn`, set before the handshake, is what TlsConfig's ALPN callback picks.
            client.alpn = b"h2"

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self._on and not flow.client_conn.tls_established and flow.response is None:
            flow.response = refusal_response(400, "plain HTTP sent to the HTTPS port")

    def done(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None
