"""``gateway-builder schema [MANIFEST]``: print the JSON Schema of the manifests."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway_builder.manifest import json_schemas
from gateway_builder.ui import UI


def run(args: argparse.Namespace, ui: UI) -> dict[str, Any]:
    """The schemas go to stdout as JSON whatever ``--json`` says: they are the output."""
    del ui  # the schema is the output in both modes
    schemas = json_schemas()
    if args.manifest != "all":
        schemas = {args.manifest: schemas[args.manifest]}
    sys.stdout.write(json.dumps(schemas, indent=2, sort_keys=True) + "\n")
    return {"ok": True}
