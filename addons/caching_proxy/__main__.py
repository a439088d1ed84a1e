import signal

# Held pending, not fatal, until the access log's handler is in place (AccessLog.running): a
# logrotate's SIGUSR1 during start-up must not end the proxy. Workers inherit the mask from the
# supervisor, which blocks it before starting them, so no moment of their start is exposed.
# SIGHUP (a reload) likewise, until the runner's handler is in place.
if hasattr(signal, "SIGUSR1"):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGHUP})

from caching_proxy.cli.main import main

raise SystemExit(main())
