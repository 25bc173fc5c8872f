"""``python -m gateway_executor``: see :mod:`gateway_executor.server`.

The executor process is a child subreaper before anything starts: processes orphaned below its
policy workers (a policy that forks and exits, a ``setsid`` grandchild) are re-parented to it
instead of init, so it can kill them (``procs.py``).

gRPC's fork handlers are off (before gRPC is loaded): a worker started under another uid is
forked, not vforked, and its child only execs, so the handlers have nothing to do but log.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # read when gRPC loads, below

from gateway_executor import procs
from gateway_executor.server import main

procs.set_subreaper()
raise SystemExit(main())
