from caching_proxy.cli import main

raise SystemExit(main())
