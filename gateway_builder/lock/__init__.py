"""The lock stage: each policy locked separately for its own Python (:mod:`.locking`), with a
resolver backend (:mod:`.resolve`: uv or pip-tools), into the lock file (:mod:`.file`)."""

from __future__ import annotations

from gateway_builder.lock.file import Lock, read_lock
from gateway_builder.lock.locking import (
    LockResult,
    check_lock,
    check_lock_owner,
    default_lock_path,
    edited_problems,
    lock_policies,
    manifest_name,
    pins_from_lock,
    verify_pins,
    write_lock,
)

__all__ = [
    "Lock",
    "LockResult",
    "check_lock",
    "check_lock_owner",
    "default_lock_path",
    "edited_problems",
    "lock_policies",
    "manifest_name",
    "pins_from_lock",
    "read_lock",
    "verify_pins",
    "write_lock",
]
