"""``python -m gateway_executor``: see :mod:`gateway_executor.server`.

The executor process is a child subreaper before anything starts: processes orphaned below its
policy workers (a policy that forks and exits, a ``setsid`` grandchild) are re-parented to it
instead of init, so it can kill them (``procs.py``).
"""

from gateway_executor import procs
from gateway_executor.server import main

procs.set_subreaper()
raise SystemExit(main())
