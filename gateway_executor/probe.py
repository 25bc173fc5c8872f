"""``python -m gateway_executor.probe``: is the executor alive and serving? (the image's HEALTHCHECK)

Sends ``HealthCheck`` on the executor's socket with a deadline and prints one line. Exit 0 when
it answered in time and every policy is ready or quarantined (a quarantined policy is released on
probation after its cool-down: the executor serves, so the container is healthy); 1 when it did
not answer in time (a hung or stopped executor), is starting or stopping, or a policy failed to
start.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc

from gateway_executor import defaults
from gateway_executor.client import ExecutorClient
from gateway_executor.proto import python_executor_pb2 as pb


def verdict(resp: pb.HealthCheckResponse) -> tuple[bool, str]:
    """(healthy, one line) for a ``HealthCheck`` answer."""
    quarantined = [p.name for p in resp.policies if p.quarantined]
    failed = [p for p in resp.policies if not p.ready and not p.quarantined]
    if failed or not resp.policies:
        return False, f"not ready: {resp.reason or 'no policies'}"
    line = f"ready: {len(resp.policies)} policies"
    if quarantined:
        line += f" ({', '.join(quarantined)} quarantined)"
    if resp.protections_off:
        line += f"; protections off: {', '.join(sorted({p.name for p in resp.protections_off}))}"
    return True, line


def main(argv: Sequence[str] | None = None) -> int:
    """Probe once; 0 healthy, 1 not."""
    ap = argparse.ArgumentParser(prog="python -m gateway_executor.probe", description=__doc__)
    ap.add_argument("--socket", default=defaults.SOCKET_PATH, help="socket path or HOST:PORT")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = ap.parse_args(argv)
    client = ExecutorClient(args.socket, timeout=args.timeout)
    try:
        resp = client.health()
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        why = (
            f"no answer within {args.timeout:g}s"
            if code == grpc.StatusCode.DEADLINE_EXCEEDED
            else f"{code.name if code else 'error'}: {exc.details() if isinstance(exc, grpc.Call) else exc}"
        )
        print(f"executor: {why}")
        return 1
    finally:
        client.close()
    healthy, line = verdict(resp)
    print(f"executor: {line}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
