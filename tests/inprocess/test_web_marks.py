"""mitmweb's flow list: every outcome of the cache gets its own marker and comment (web_marks.py),
and every answer the cache builds carries its timestamps (mitmweb's time column), in-process with
a real store and a real counting origin."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mitmproxy import http
from mitmproxy.utils.emoji import emoji

from caching_proxy.cache.flow_state import state_of
from caching_proxy.ops.marks import MARKERS, WebMarks, comment_for
from support.inprocess import Harness
from support.origin import Origin, Reply, Seen


def etag_route(origin: Origin, path: str, cache_control: str) -> None:
    def handler(seen: Seen) -> Reply:
        if seen.header("If-None-Match") == '"e1"':
            return Reply(304, [("ETag", '"e1"'), ("Cache-Control", cache_control)])
        return Reply(200, [("ETag", '"e1"'), ("Cache-Control", cache_control)], b"body")

    origin.route(path, handler=handler)


def test_each_outcome_is_marked_and_timed(origin: Origin, tmp_path: Path) -> None:
    origin.route("/fresh", 200, [("Cache-Control", "max-age=60")], b"fresh")
    origin.route("/nostore", 200, [("Cache-Control", "no-store")], b"x")
    etag_route(origin, "/reval", "max-age=1")
    etag_route(origin, "/swr", "max-age=1, stale-while-revalidate=60")
    marks = WebMarks()
    seen: dict[str, http.HTTPFlow] = {}

    async def main() -> None:
        with Harness(origin, tmp_path / "cache") as h:
            async def get(label: str, path: str, method: str = "GET", **headers: str) -> None:
                flow = await h.get(path, method, **headers)
                # mitmproxy runs the response hook for an answer set in the request hook too;
                # the harness does only for forwarded flows.
                marks.response(flow)
                seen[label] = flow

            await get("miss", "/fresh")
            await get("hit", "/fresh")
            await get("miss-not-stored", "/nostore")
            await get("pass", "/fresh", "POST")
            await get("unavailable", "/none", cache_control="only-if-cached")
            await h.get("/reval")
            await h.get("/swr")
            h.clock.advance(5)
            await get("revalidated", "/reval")
            await get("stale", "/swr")
            await asyncio.gather(*h.cache.refresher._tasks)

    asyncio.run(main())
    shown = {label: (state_of(f).outcome, f.marked, f.comment)  # type: ignore[union-attr]
             for label, f in seen.items()}
    assert shown == {
        "miss": ("miss", ":globe_with_meridians:", "cache MISS (stored)"),
        "hit": ("hit", ":floppy_disk:", "cache HIT"),
        "miss-not-stored": ("miss", ":globe_with_meridians:", "cache MISS (not stored)"),
        "pass": ("pass", ":arrow_right:", "pass (method)"),
        "unavailable": ("unavailable", ":no_entry:", "unavailable (only-if-cached)"),
        "revalidated": ("revalidated", ":arrows_counterclockwise:", "revalidated (304)"),
        "stale": ("stale", ":hourglass:", "stale (stale-while-revalidate)"),
    }
    for label, flow in seen.items():
        response = flow.response
        assert response is not None, label
        # What mitmweb's time column reads: "..." while timestamp_end is None.
        assert response.timestamp_start is not None and response.timestamp_end is not None, label
        assert response.timestamp_end >= response.timestamp_start, label


def test_every_marker_is_an_emoji_mitmweb_shows() -> None:
    assert all(marker in emoji for marker in MARKERS.values())
    assert len(set(MARKERS.values())) == len(MARKERS) - 1  # collapsed is a hit
    assert comment_for("collapsed", None) == "cache HIT (collapsed)"


def test_a_stale_answer_chosen_in_the_error_hook_is_marked(origin: Origin,
                                                          tmp_path: Path) -> None:
    origin.route("/sie", 200, [("Cache-Control", "max-age=1, stale-if-error=600")], b"old")
    marks = WebMarks()

    async def main() -> http.HTTPFlow:
        with Harness(origin, tmp_path / "cache") as h:
            await h.get("/sie")
            h.clock.advance(5)
            flow = await h.fail(h.flow("/sie"), "Connection refused")
            marks.error(flow)
            return flow

    flow = asyncio.run(main())
    assert flow.response is not None and flow.response.content == b"old"
    assert (flow.marked, flow.comment) == (":hourglass:", "stale (stale-on-error)")
    assert flow.response.timestamp_end is not None


def test_a_failed_exchange_is_commented_with_what_its_client_got_and_why() -> None:
    from mitmproxy import flow as mflow
    from mitmproxy.test import tflow

    from caching_proxy.cache.flow_state import TIMEOUT_KEY
    from caching_proxy.mitm import error_page

    cases = [("[Errno 111] Connect call failed ('127.0.0.1', 9)", {}, "502 (origin-refused)"),
             ("[Errno -2] Name or service not known", {}, "502 (origin-dns)"),
             ("server closed connection", {}, "502 (origin-closed)"),
             ("Client disconnected.", {}, "no answer (client-closed)"),
             ("server closed connection", {TIMEOUT_KEY: "first-byte"}, "504 (origin-timeout)")]
    for message, metadata, comment in cases:
        f = tflow.tflow()
        f.error = mflow.Error(message)
        f.metadata.update(metadata)
        if metadata:  # the timeout's 504, chosen in the error hook as origin_timeouts does
            error_page.answer_instead(f, error_page.error_response(504, "timed out"))
        WebMarks().error(f)
        assert f.comment == comment, message
