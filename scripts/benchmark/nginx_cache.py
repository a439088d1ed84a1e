"""nginx's proxy_cache in front of the bench's origin, the reference the hit rows are held to
(issue 31: one caching-proxy worker's hits >= nginx proxy_cache's one worker).

One worker process, keep-alive to the origin, the cache in the work folder, sendfile on (as
Debian's packaged nginx.conf has it), access_log off: nginx writes no line per request, while the
caching-proxy rows write theirs (its default, to the server's log file), a cost nginx is spared.
`X-Cache: $upstream_cache_status` tells the bench a HIT from anything else.
Writes its config into PREFIX, then becomes nginx (exec), so the bench stops it like any server:

    python -m benchmark.nginx_cache --port 8083 --origin http://127.0.0.1:8080 --prefix DIR
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from urllib.parse import urlsplit

from benchmark.origin import nginx_path

CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 10000000;  # as the origin: no reconnects every 1000 requests
    default_type application/octet-stream;
    client_body_temp_path {prefix}/client_temp;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=bench:16m max_size=1g inactive=60m
                     use_temp_path=off;
    upstream origin {{
        server {origin};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 10m;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"""


def command(prefix: Path, port: int, origin: str) -> list[str]:
    """The nginx command line serving on `port` from a config written into `prefix`."""
    nginx = nginx_path()
    if nginx is None:
        raise SystemExit("benchmark.nginx_cache: nginx is not installed")
    where = urlsplit(origin)
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(CONF.format(prefix=prefix, port=port, origin=f"{where.hostname}:{where.port}"))
    return [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf),
            "-g", "daemon off;"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--origin", required=True)
    p.add_argument("--prefix", type=Path, required=True)
    args = p.parse_args()
    argv = command(args.prefix.resolve(), args.port, args.origin)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
