"""The image's policy users: a user and group per Python policy (uid and gid from the plan), each
policy's private home, and the executor's capability launcher.

``users.json`` in the context feeds ``stage_tool.py users`` in the Dockerfile's ``users`` stage,
which adds them to the runtime base's ``/etc/passwd`` and ``/etc/group``; the runtime stage copies
the result. The uids are also in the registry, which the executor runs the workers with.
"""

from __future__ import annotations

import json
from typing import Any

from gateway_builder import defaults
from gateway_builder.plan import BuildPlan
from gateway_executor.paths import policy_home

#: Longest user name the shadow tools accept.
MAX_USER_NAME = 32
#: Where ``users.json`` lives in the context (not under ``build/``: every venv stage copies that
#: directory, and a new policy must not invalidate their cache).
USERS_SPEC = "users/users.json"


def policy_user(name: str, uid: int) -> str:
    """The user (and group) name of a policy: ``pol-<name>``, shortened with the uid if long."""
    user = f"{defaults.POLICY_USER_PREFIX}{name}"
    if len(user) <= MAX_USER_NAME:
        return user
    tail = f"-{uid}"
    return user[: MAX_USER_NAME - len(tail)] + tail


def users_spec(plan: BuildPlan) -> dict[str, Any]:
    """What ``stage_tool.py users`` creates."""
    return {
        "runtime_uid": defaults.RUNTIME_UID,
        "runtime_gid": defaults.RUNTIME_UID,
        "homes_dir": defaults.POLICY_HOMES_DIR,
        "launcher": defaults.EXECUTOR_LAUNCHER,
        "capabilities": list(defaults.EXECUTOR_CAPABILITIES),
        "policies": [
            {
                "name": p.name,
                "user": policy_user(p.name, p.uid),
                "uid": p.uid,
                "gid": p.gid,
                "home": policy_home(p.name),
            }
            for p in plan.python_policies
        ],
    }


def users_json(plan: BuildPlan) -> str:
    """``users.json``: canonical text, so identical plans give identical bytes."""
    return json.dumps(users_spec(plan), indent=2, sort_keys=True) + "\n"
