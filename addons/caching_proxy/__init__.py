"""caching-proxy: an HTTP caching reverse proxy built as a mitmproxy addon over diskcache."""

__version__ = "0.1.0"
