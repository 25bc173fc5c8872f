"""Python policy executor shipped in the gateway-runtime image.

Speaks the upstream ``wso2.gateway.python.v1alpha2`` gRPC protocol and runs each policy in a pool
of worker processes started with the policy's own virtualenv interpreter. Runtime code: it must
never import ``gateway_builder``.
"""
