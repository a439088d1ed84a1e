"""The request path: the addon's hooks, the flow's state, lookup and storing, what is served.

Each I/O module is named after its partner in `policy/` (lookup, storing, encoding, ranges,
stale), which decides; the module here carries the decision out on the flow and the store.
"""
