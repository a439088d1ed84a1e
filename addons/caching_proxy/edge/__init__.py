"""What guards the door: refusals of hostile requests, client limits, TLS, the body limit,
origin timeouts, PURGE, hop-by-hop fields, and the fail-closed decorator every check wears.
"""
