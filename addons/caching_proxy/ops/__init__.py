"""What an operator sees and runs: counters, metrics, the access log and its formats, mitmweb's
marks, the admin API, reports, warming and mitmproxy commands.
"""
