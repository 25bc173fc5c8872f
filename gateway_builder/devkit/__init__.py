"""The policy developer kit: scaffold a policy (:mod:`.scaffold`), run it through the real
executor without Docker (:mod:`.harness`, :mod:`.runner`, its venv from :mod:`.venv`) and
describe it for docs (:mod:`.describe`). Policy authors import the harness from
:mod:`gateway_builder.testing`.

Submodules are imported on use: the scaffold and the description need neither gRPC nor
protobuf.
"""
