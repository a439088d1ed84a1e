"""The benchmark behind scripts/bench: caching-proxy against plain mitmdump, the origin and a
naive Flask cache, in one run on this machine. Entry point: `benchmark.run.main`."""
