"""Test a policy folder through the real gateway executor, from pytest or a script.

```python
from gateway_builder.testing import PolicyHarness

with PolicyHarness("path/to/my-policy") as harness:      # its own venv, a real executor
    harness.init({"message": "hi"})                      # InitPolicy (params schema-checked)
    action = harness.request_headers({"accept": "*/*"})  # one call over the executor protocol
    assert action.kind == "modify" and action.headers_set == {"x-my-policy": "hi"}
    for result in harness.run_samples():                 # every samples/*.json
        assert result.ok, result.problems
```

The venv comes from the folder's requirements (plus the SDK), or with ``lock_file=`` from its
pins in a ``python-build.lock``; it is cached, so only a change of requirements installs
anything. Needs ``grpcio`` and ``protobuf`` (``pip install 'gateway-builder[executor]'``); no
Docker.
"""

from __future__ import annotations

from gateway_builder.devkit.actions import Action
from gateway_builder.devkit.harness import (
    HARNESS_METADATA,
    InitResult,
    ParamsError,
    PolicyHarness,
    SampleResult,
)
from gateway_executor.samples import Outcome, Sample

__all__ = [
    "HARNESS_METADATA",
    "Action",
    "InitResult",
    "Outcome",
    "ParamsError",
    "PolicyHarness",
    "Sample",
    "SampleResult",
]
