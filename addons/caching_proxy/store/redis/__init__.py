"""The Redis backend: one server, Sentinel or Cluster, shared by several instances.
"""
