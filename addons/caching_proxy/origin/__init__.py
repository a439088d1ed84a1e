"""Between the cache and the origin: the origin budget, its pauses, offline mode."""
