"""The cache addon in-process (mitmproxy's taddons/tflow, a real diskcache folder, a real counting
origin, an injected clock): freshness, revalidation, stale-while-revalidate, stale-if-error,
coalescing, invalidation and the wrong answers of issue 12, without sleeping for time to pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from caching_proxy.cache.coalescing import Fills
from caching_proxy.cache.flow_state import state_of
from support.inprocess import Harness, cache_status, x_cache
from support.origin import Origin, Reply, Seen

Scenario = Callable[[Harness], Awaitable[None]]


@pytest.fixture
def run(origin: Origin, tmp_path: Path) -> Callable[..., None]:
    def run(scenario: Scenario, **options: object) -> None:
        async def main() -> None:
            with Harness(origin, tmp_path / "cache", **options) as h:
                await scenario(h)

        asyncio.run(main())

    return run


def etag_route(origin: Origin, path: str, cache_control: str, body: bytes = b"v1") -> None:
    """An origin that answers 304 to a matching If-None-Match, as a real one does."""

    def handler(seen: Seen) -> Reply:
        if seen.header("If-None-Match") == '"e1"':
            return Reply(304, [("ETag", '"e1"'), ("Cache-Control", cache_control)])
        return Reply(200, [("ETag", '"e1"'), ("Cache-Control", cache_control)], body)

    origin.route(path, handler=handler)


def test_miss_then_hit_without_the_origin(run: Callable[..., None], origin: Origin) -> None:
    origin.route("/a", headers=[("Cache-Control", "max-age=60")], body=b"hello")

    async def scenario(h: Harness) -> None:
        first = await h.get("/a")
        second = await h.get("/a")
        assert (x_cache(first), x_cache(second)) == ("MISS", "HIT")
        assert second.response is not None and second.response.content == b"hello"
        assert origin.count("/a") == 1

    run(scenario)


def test_freshness_runs_on_the_injected_clock(run: Callable[..., None], origin: Origin) -> None:
    etag_route(origin, "/f", "max-age=10")

    async def scenario(h: Harness) -> None:
        await h.get("/f")
        h.clock.advance(9)
        assert x_cache(await h.get("/f")) == "HIT"
        h.clock.advance(2)  # 11 s old: stale, revalidated with the stored ETag
        revalidated = await h.get("/f")
        assert x_cache(revalidated) == "MISS"
        assert origin.requests_for("/f")[-1].header("If-None-Match") == '"e1"'
        assert revalidated.response is not None and revalidated.response.content == b"v1"
        assert origin.count("/f") == 2
        # Freshened by the 304: fresh again from the new response time.
        h.clock.advance(5)
        assert x_cache(await h.get("/f")) == "HIT"
        assert origin.count("/f") == 2

    run(scenario)


def test_a_304_without_content_length_gives_one_cache_status(
    run: Callable[..., None], origin: Origin,
) -> None:
    # http.server's 304 has no Content-Length (nor does nginx's): the provisional mark of
    # responseheaders was stored with the 304's fields and served beside the final one.
    etag_route(origin, "/n", "max-age=1")

    async def scenario(h: Harness) -> None:
        await h.get("/n")
        h.clock.advance(3)
        revalidated = await h.get("/n")
        assert cache_status(revalidated) == [
            "caching-proxy; fwd=stale; fwd-status=304; stored; ttl=1"]
        hit = await h.get("/n")
        assert x_cache(hit) == "HIT"
        assert [s for s in cache_status(hit) if "fwd" in s] == []
        assert len(cache_status(hit)) == 1

    run(scenario)


def test_chunked_miss_stores_no_provisional_mark(run: Callable[..., None], origin: Origin) -> None:
    def handler(_: Seen) -> Reply:
        return Reply(200, [("Cache-Control", "max-age=60")], b"chunks", chunked=True)

    origin.route("/c", handler=handler)

    async def scenario(h: Harness) -> None:
        miss = await h.get("/c")
        assert cache_status(miss) == ["caching-proxy; fwd=uri-miss; stored; ttl=60"]
        hit = await h.get("/c")
        assert cache_status(hit) == ["caching-proxy; hit; ttl=60"]

    run(scenario)


def test_stale_while_revalidate_serves_stale_and_refreshes_once(
    run: Callable[..., None], origin: Origin,
) -> None:
    etag_route(origin, "/s", "max-age=1, stale-while-revalidate=60")

    async def scenario(h: Harness) -> None:
        await h.get("/s")
        h.clock.advance(5)
        stale = await h.get("/s")
        assert x_cache(stale) == "HIT"
        assert "stale-while-revalidate" in cache_status(stale)[0]
        assert state_of(stale) is not None and state_of(stale).outcome == "stale"  # type: ignore[union-attr]
        await asyncio.gather(*h.cache.refresher._tasks)
        assert origin.count("/s") == 2
        assert origin.requests_for("/s")[-1].header("If-None-Match") == '"e1"'
        # The 304 of the refresh made it fresh again.
        fresh = await h.get("/s")
        assert x_cache(fresh) == "HIT" and "ttl=1" in cache_status(fresh)[0]
        assert origin.count("/s") == 2

    run(scenario)


def test_a_refresh_keeps_the_rule_of_its_request(
    run: Callable[..., None], origin: Origin, tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nmatch = "/r*"\nttl = 600\nkey_headers = ["X-Team"]\n')
    etag_route(origin, "/r", "max-age=1, stale-while-revalidate=3600")

    async def scenario(h: Harness) -> None:
        await h.get("/r", X_Team="a")
        h.clock.advance(601)  # past the rule's 600 s: stale, within stale-while-revalidate
        stale = await h.get("/r", X_Team="a")
        assert "stale-while-revalidate" in cache_status(stale)[0]
        await asyncio.gather(*h.cache.refresher._tasks)
        assert origin.count("/r") == 2
        # Stored under the rule again: its ttl, and still keyed by X-Team.
        fresh = await h.get("/r", X_Team="a")
        assert x_cache(fresh) == "HIT" and "ttl=600" in cache_status(fresh)[0]
        other = await h.get("/r", X_Team="b")
        assert x_cache(other) == "MISS"

    run(scenario, cache_config=str(rules))


def test_stale_if_error_answers_an_origin_500(run: Callable[..., None], origin: Origin) -> None:
    origin.route("/e", headers=[("Cache-Control", "max-age=1, stale-if-error=60")], body=b"ok")

    async def scenario(h: Harness) -> None:
        await h.get("/e")
        origin.route("/e", status=500, body=b"broken")
        h.clock.advance(10)
        answer = await h.get("/e")
        assert answer.response is not None
        assert (answer.response.status_code, answer.response.content) == (200, b"ok")
        assert x_cache(answer) == "HIT"
        assert "stale-on-http-500" in cache_status(answer)[0]
        h.clock.advance(100)  # past stale-if-error: the 500 is passed on
        late = await h.get("/e")
        assert late.response is not None and late.response.status_code == 500

    run(scenario)


def test_concurrent_misses_are_coalesced(run: Callable[..., None], origin: Origin) -> None:
    origin.route("/slow", handler=lambda _: Reply(200, [("Cache-Control", "max-age=60")],
                                                  b"once", delay=0.3))

    async def scenario(h: Harness) -> None:
        flows = await asyncio.gather(*(h.get("/slow") for _ in range(5)))
        assert origin.count("/slow") == 1
        outcomes = sorted(state_of(f).outcome for f in flows)  # type: ignore[union-attr]
        assert outcomes == ["collapsed"] * 4 + ["miss"]
        assert all(f.response is not None and f.response.content == b"once" for f in flows)

    run(scenario)


def test_invalidation_matches_however_the_origin_host_is_spelled(
    run: Callable[..., None], origin: Origin,
) -> None:
    origin.route("/item", headers=[("Cache-Control", "max-age=60")], body=b"v1")

    async def scenario(h: Harness) -> None:
        def spelled(method: str) -> object:
            f = h.flow("/item", method)
            f.request.host = "LocalHost"  # as the operator wrote --origin
            return f

        await h.send(spelled("GET"))  # type: ignore[arg-type]
        assert x_cache(await h.send(spelled("GET"))) == "HIT"  # type: ignore[arg-type]
        post = await h.send(spelled("POST"))  # type: ignore[arg-type]
        assert post.response is not None and post.response.status_code == 200
        assert x_cache(await h.send(spelled("GET"))) == "MISS"  # type: ignore[arg-type]
        assert origin.count("/item") == 3

    run(scenario)


def test_targeted_private_fields_are_not_stored(run: Callable[..., None], origin: Origin) -> None:
    origin.route("/t", headers=[("Edge-Cache-Control", 'max-age=60, private="x-secret"'),
                                ("X-Secret", "for-one-client"), ("X-Public", "yes")], body=b"t")

    async def scenario(h: Harness) -> None:
        await h.get("/t")
        hit = await h.get("/t")
        assert x_cache(hit) == "HIT"
        assert hit.response is not None
        assert "X-Secret" not in hit.response.headers
        assert hit.response.headers["X-Public"] == "yes"

    run(scenario, cache_targeted_fields="Edge-Cache-Control")


def test_head_is_answered_from_the_stored_get_without_a_body(
    run: Callable[..., None], origin: Origin,
) -> None:
    origin.route("/h", headers=[("Cache-Control", "max-age=60")], body=b"body")

    async def scenario(h: Harness) -> None:
        head = await h.get("/h", "HEAD")
        assert head.request.method == "HEAD"  # forwarded as GET, answered as HEAD
        assert head.response is not None and head.response.raw_content == b""
        assert head.response.headers["Content-Length"] == "4"
        assert origin.requests_for("/h")[0].method == "GET"
        get = await h.get("/h")
        assert x_cache(get) == "HIT" and get.response is not None
        assert get.response.content == b"body"

    run(scenario)


def test_large_entries_go_off_the_loop_and_as_memoryviews(
    run: Callable[..., None], origin: Origin,
) -> None:
    big = b"x" * (2 << 20)
    etag_route(origin, "/big", "max-age=1", body=big)

    async def scenario(h: Harness) -> None:
        h.cache.shared.send_views = True
        await h.get("/big")
        hit = await h.get("/big")
        # Built under Python's assertions (no -O): the view goes in after construction.
        assert hit.response is not None and isinstance(hit.response.raw_content, memoryview)
        assert bytes(hit.response.raw_content) == big
        h.clock.advance(5)
        # The 304 freshening a 2 MiB entry writes it in a thread: the hook is a coroutine.
        revalidated = await h.get("/big")
        assert h.response_hook_waited
        assert "fwd-status=304; stored" in cache_status(revalidated)[0]
        assert revalidated.response is not None and revalidated.response.content == big
        assert x_cache(await h.get("/big")) == "HIT"

    run(scenario)


def test_client_disconnects_are_not_origin_errors(run: Callable[..., None], origin: Origin) -> None:
    origin.route("/gone", headers=[("Cache-Control", "max-age=60")], body=b"x")

    async def scenario(h: Harness) -> None:
        await h.fail(h.flow("/gone"), "Client disconnected.")
        assert h.counters.pending.get("origin_errors", 0) == 0
        assert h.counters.pending["misses"] == 1
        await h.fail(h.flow("/gone"), "Connection refused")
        assert h.counters.pending["origin_errors"] == 1

    run(scenario)


def test_a_late_leader_wakes_nobody_elses_waiters() -> None:
    async def scenario() -> None:
        fills = Fills()
        first = fills.lead("k")
        # The first fill was given up (past the bound) and a second leader took over.
        second = fills.lead("k")
        waiting = fills.waiting_on("k", bound=60)
        assert waiting is second
        fills.finish("k", first)  # the first leader ends late
        assert not second.done()
        assert fills.waiting_on("k", bound=60) is second
        fills.finish("k", second)
        assert second.done() and fills.waiting_on("k", bound=60) is None

    asyncio.run(scenario())


def test_a_fresh_entry_revalidated_for_the_clients_no_cache_says_fwd_request(
        run: Callable[..., None], origin: Origin) -> None:
    """RFC 9211: the request's directives sent it forward (fwd=request), not staleness."""
    etag_route(origin, "/nc", "max-age=600")

    async def scenario(h: Harness) -> None:
        await h.get("/nc")
        for directive in ("no-cache", "max-age=0"):
            h.clock.advance(1)  # an age of 1 s: older than max-age=0 allows
            flow = await h.get("/nc", Cache_Control=directive)
            assert cache_status(flow)[0].startswith("caching-proxy; fwd=request; fwd-status=304")
        assert origin.count("/nc") == 3

    run(scenario)
