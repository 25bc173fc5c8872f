"""One module per CLI command. Each turns parsed flags (plus environment and defaults) into the
typed options of :mod:`gateway_builder.options` and calls the library; nothing below this
package imports it or :mod:`gateway_builder.cli`.

Every command module has ``run(args, ui) -> dict``: the JSON-able result it also printed.
"""

from __future__ import annotations

#: CLI command name -> module in this package.
COMMANDS: dict[str, str] = {
    "validate": "validate",
    "schema": "schema",
    "fetch": "fetch",
    "lock": "lock",
    "render": "render",
    "build": "build",
    "smoke-test": "smoke_test",
    "bases": "bases",
    "new-policy": "new_policy",
    "test-policy": "test_policy",
    "describe-policy": "describe_policy",
}
