"""The memory tier: copies of hot entries kept in process, in front of any backend.
"""
