"""Allow ``python -m gateway_builder``."""

from gateway_builder.cli import main

raise SystemExit(main())
