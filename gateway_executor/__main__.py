"""``python -m gateway_executor``: see :mod:`gateway_executor.server`."""

from gateway_executor.server import main

raise SystemExit(main())
