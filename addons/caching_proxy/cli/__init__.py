"""The `caching-proxy` command: its options (declared here, read by the addons), the config file,
the one-shot operations on a store.
"""
