#!/usr/bin/env python3
"""Worker shim: runs ONE Python policy inside that policy's own virtualenv.

The executor starts this file as a script with the policy venv's interpreter::

    <venv>/bin/python worker_shim.py --fd N --control-fd M --parent-pid P --memory-mb MB

It uses only the standard library and ``apip_sdk_core`` and runs on Python 3.10-3.13; from the
executor it needs only its two sibling files ``framing.py`` (the frame format) and ``phases.py``
(the hook of each phase), loaded by path. It talks to the executor over the inherited socket
``--fd`` with length-prefixed JSON frames. Bytes travel as JSON strings decoded as latin-1 (one
char per byte, lossless). Nothing executable ever crosses the socket in either direction.

Conversation (executor -> worker, one reply per frame, strictly in order):

* ``start``: prepend ``sys_path``, import ``module`` once, optionally call ``get_policy`` with the
  registry params and check that ``mode()`` matches the implemented interfaces; reply with the
  Python version and (if asked) the venv's installed distributions.
* ``init`` / ``call`` / ``destroy`` / ``exit``: create a policy instance, run one hook, close
  instances, leave.

``--control-fd`` is a non-blocking pipe on which the executor writes 8-byte sequence numbers of
cancelled calls; ``ExecutionContext.is_cancelled()`` polls it. The shim dies with its parent
(``PR_SET_PDEATHSIG``) and exits on EOF, so no worker outlives the executor.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import platform
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any


def _sibling(name: str) -> ModuleType:
    """The executor module ``name`` from this file's directory.

    Inside the executor (and its tests) this file is ``gateway_executor.worker_shim`` and the
    sibling is imported as usual. As a worker it runs as a script in the policy's venv, where
    the package is not installed and ``-I`` keeps this directory off ``sys.path`` (it must not
    shadow the policy's own modules): the file is loaded by path under a private name.
    """
    if __package__:
        return importlib.import_module(f"{__package__}.{name}")
    qualified = f"_gateway_executor_{name}"
    loaded = sys.modules.get(qualified)
    if loaded is not None:
        return loaded
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(qualified, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


framing = _sibling("framing")
phases = _sibling("phases")
PHASES: dict[str, Any] = phases.PHASES
encode_frame: Callable[[Any], bytes] = framing.encode


def _b2s(data: bytes | bytearray | memoryview | None) -> str | None:
    return None if data is None else bytes(data).decode("latin-1")


def _s2b(text: str | None) -> bytes | None:
    return None if text is None else text.encode("latin-1")


# --------------------------------------------------------------------------------------------
# process hygiene
# --------------------------------------------------------------------------------------------
def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL us when the executor goes away (Linux), then re-check."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        except Exception:  # the EOF check still ends us when the executor dies
            pass
    if parent_pid and os.getppid() != parent_pid:
        os._exit(3)


#: The fork server's process name (``/proc/<pid>/comm``), which tells it from its workers.
FORK_SERVER_NAME = b"policy-forks"


def _set_name(name: bytes) -> None:
    """Set this process's name (``PR_SET_NAME``; Linux only, best effort)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)
    except Exception:
        pass


def _limit_memory(mb: int) -> None:
    """Cap this process (and what it forks) at ``mb`` MiB of private memory (RLIMIT_DATA:
    heap, anonymous mappings) and ``mb`` + headroom of address space (RLIMIT_AS). Running out
    raises MemoryError, which ends the worker with :data:`framing.EXIT_MEMORY`."""
    import resource

    data = mb * 1024 * 1024
    space = data + framing.ADDRESS_SPACE_HEADROOM_MB * 1024 * 1024
    for which, limit in ((resource.RLIMIT_DATA, data), (resource.RLIMIT_AS, space)):
        try:
            _soft, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(which, (limit, limit))
        except (ValueError, OSError) as exc:
            print(f"worker_shim: cannot limit memory: {exc}", file=sys.stderr)


def _distributions() -> dict[str, str]:
    """Installed distributions (name -> version) as ``importlib.metadata`` finds them, read from
    the ``*.dist-info/METADATA`` headers directly: importing ``importlib.metadata`` (email,
    zipfile, csv, ...) would cost every worker about 1.4 MiB. Anything else on the path (eggs,
    zips) is left to ``importlib.metadata``."""
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            if entry and os.path.exists(entry):  # a zip or an egg file
                return _distributions_by_importlib()
            continue
        for name in names:
            if name.endswith((".egg-info", ".egg")):
                return _distributions_by_importlib()
            if not name.endswith(".dist-info"):
                continue
            fields: dict[str, str] = {}
            try:
                with open(os.path.join(entry, name, "METADATA"), encoding="utf-8") as f:
                    for line in f:
                        if not line.strip():
                            break  # the headers end at the first empty line
                        key, _, value = line.partition(":")
                        if key in ("Name", "Version") and key not in fields:
                            fields[key] = value.strip()
            except (OSError, UnicodeDecodeError):
                continue
            if fields.get("Name"):
                found.setdefault(fields["Name"], fields.get("Version", ""))
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def _distributions_by_importlib() -> dict[str, str]:
    from importlib import metadata

    found: dict[str, str] = {}
    for dist in metadata.distributions():
        try:
            name = dist.metadata["Name"]
        except Exception:
            name = None
        if name:
            found.setdefault(str(name), str(dist.version))
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


# --------------------------------------------------------------------------------------------
# protocol state
# --------------------------------------------------------------------------------------------
class Shim:
    """Holds the imported policy module, the SDK and the live policy instances."""

    def __init__(self, control_fd: int | None) -> None:
        self.sdk: Any = None
        self.get_policy: Callable[..., Any] | None = None
        self.instances: dict[str, Any] = {}
        self.policy_name = ""
        self.policy_version = ""
        self._control_fd = control_fd
        self._cancelled: set[int] = set()
        self._current_seq = -1
        self._fields: dict[type, frozenset[str]] = {}
        self._phases: dict[str, Any] = {}
        self._contexts: dict[str, Any] = {}
        self._allowed: dict[str, tuple[type, ...]] = {}
        self._plans: dict[type, tuple[tuple[str, int], ...]] = {}
        self.last_call: Any = None
        # Context field -> converter from its wire form, for request and response phases.
        self._convert: tuple[dict[str, Callable[[Any], Any]], ...] = (
            {
                "headers": self._headers,
                "body": self._body,
                "downstream": self._downstream,
                "upstream": lambda raw: self._upstream(raw, False),
            },
            {
                "request_headers": self._headers,
                "response_headers": self._headers,
                "request_body": self._body,
                "response_body": self._body,
                "downstream": self._downstream,
                "upstream": lambda raw: self._upstream(raw, True),
            },
        )

    # ---- SDK helpers ---------------------------------------------------------------------
    def _make(self, cls: type, **kwargs: Any) -> Any:
        """Build an SDK dataclass with only the fields this SDK version has."""
        return self._build(cls, kwargs)

    def _build(self, cls: type, kwargs: dict[str, Any]) -> Any:
        """``cls(**kwargs)``; fields this SDK version lacks are dropped (only if it objects)."""
        try:
            return cls(**kwargs)
        except TypeError:
            names = self._fields.get(cls)
            if names is None:
                names = frozenset(getattr(cls, "__dataclass_fields__", {}))
                self._fields[cls] = names
            if kwargs.keys() <= names:
                raise
            return cls(**{k: v for k, v in kwargs.items() if k in names})

    def _bind_sdk(self, sdk: Any) -> None:
        """Look the SDK's classes up once (phase enums, context classes, allowed actions)."""
        self.sdk = sdk
        known = {p.value for p in sdk.ExecutionPhase}
        self._phases = {name: sdk.ExecutionPhase(name) for name in PHASES if name in known}
        self._contexts = {
            name: getattr(sdk, phase.context) for name, phase in PHASES.items() if phase.context
        }
        self._allowed = {
            name: tuple(getattr(sdk, action) for action in phase.actions)
            for name, phase in PHASES.items()
            if phase.actions
        }

    def _headers(self, raw: dict[str, list[str]] | None) -> Any:
        return self.sdk.Headers(raw or {})

    def _body(self, raw: dict[str, Any] | None) -> Any:
        if raw is None:
            return None
        return self.sdk.Body(
            content=raw.get("content", "").encode("latin-1"),
            end_of_stream=bool(raw.get("eos")),
            present=bool(raw.get("present")),
        )

    def _downstream(self, raw: dict[str, Any] | None) -> Any:
        cls = getattr(self.sdk, "DownstreamContext", None)
        if raw is None or cls is None:
            return None
        req = raw.get("request")
        request = None
        if req is not None:
            hdrs = req.get("headers")
            request = self._make(
                self.sdk.DownstreamRequest,
                headers=None if hdrs is None else self._headers(hdrs),
                path=req.get("path", ""),
                method=req.get("method", ""),
                authority=req.get("authority", ""),
                scheme=req.get("scheme", ""),
            )
        return self._make(cls, request=request)

    def _upstream(self, raw: dict[str, Any] | None, response_phase: bool) -> Any:
        name = "UpstreamResponseContext" if response_phase else "UpstreamRequestContext"
        cls = getattr(self.sdk, name, None)
        if raw is None or cls is None:
            return None
        kwargs: dict[str, Any] = {
            "name": raw.get("name", ""),
            "url": raw.get("url", ""),
            "base_path": raw.get("base_path", ""),
        }
        if response_phase:
            resp = raw.get("response")
            if resp is not None:
                hdrs = resp.get("headers")
                kwargs["response"] = self._make(
                    self.sdk.UpstreamResponse,
                    headers=None if hdrs is None else self._headers(hdrs),
                    status_code=int(resp.get("status_code", 0)),
                )
        return self._make(cls, **kwargs)

    # The wire keys are the protobuf field names, which are the SDK's field names: decoded
    # dicts pass straight through (fields this SDK version lacks are dropped by ``_make``).
    def _auth(self, raw: dict[str, Any] | None) -> Any:
        if raw is None:
            return None
        previous = raw.get("previous")
        if previous is not None:
            raw["previous"] = self._auth(previous)
        return self._build(self.sdk.AuthContext, raw)

    def _shared(self, raw: dict[str, Any]) -> Any:
        auth = raw.get("auth_context")
        if auth is not None:
            raw["auth_context"] = self._auth(auth)
        return self._build(self.sdk.SharedContext, raw)

    def _context(self, phase: str, raw: dict[str, Any], shared: Any) -> Any:
        """The phase's context object. Keys missing from ``raw`` take the protobuf default."""
        if not self._contexts:
            self._bind_sdk(self.sdk)
        response_phase = phase.startswith("response")
        convert = self._convert[response_phase]
        for key, value in raw.items():
            fn = convert.get(key)
            if fn is not None:
                raw[key] = fn(value)
        raw["shared"] = shared
        if response_phase and "response_status" not in raw:
            raw["response_status"] = 0  # protobuf's default; the SDK's would be 200
        return self._build(self._contexts[phase], raw)

    def _execution_context(self, phase: str, ex: dict[str, Any]) -> Any:
        ex["phase"] = self._phases.get(phase) or self.sdk.ExecutionPhase(phase)
        ex["_is_cancelled"] = self.is_cancelled
        if "request_id" not in ex:
            ex["request_id"] = ""
        deadline = ex.get("deadline")
        if deadline is not None:
            ex["deadline"] = _deadline(deadline)
        return self._build(self.sdk.ExecutionContext, ex)

    def _metadata(self, raw: dict[str, Any] | None) -> Any:
        raw = raw or {}
        return self._make(
            self.sdk.PolicyMetadata,
            route_name=raw.get("route_name", ""),
            api_id=raw.get("api_id", ""),
            api_name=raw.get("api_name", ""),
            api_version=raw.get("api_version", ""),
            attached_to=raw.get("attached_to", ""),
        )

    # ---- mode contract -------------------------------------------------------------------
    def check_mode(self, policy: Any) -> tuple[dict[str, str], dict[str, bool]]:
        """Validate ``policy.mode()`` against the interfaces; return (mode, capabilities)."""
        sdk = self.sdk
        if not isinstance(policy, sdk.Policy):
            raise TypeError(
                f"get_policy returned {type(policy).__name__}, not an apip_sdk_core Policy"
            )
        mode = policy.mode()
        if not isinstance(mode, sdk.ProcessingMode):
            raise TypeError(f"mode() returned {type(mode).__name__}, not ProcessingMode")
        problems = []
        spec = (
            (
                "request_header_mode",
                sdk.HeaderProcessingMode,
                sdk.RequestHeaderPolicy,
                sdk.RequestHeaderPolicy,
            ),
            (
                "request_body_mode",
                sdk.BodyProcessingMode,
                sdk.RequestPolicy,
                sdk.StreamingRequestPolicy,
            ),
            (
                "response_header_mode",
                sdk.HeaderProcessingMode,
                sdk.ResponseHeaderPolicy,
                sdk.ResponseHeaderPolicy,
            ),
            (
                "response_body_mode",
                sdk.BodyProcessingMode,
                sdk.ResponsePolicy,
                sdk.StreamingResponsePolicy,
            ),
        )
        wire: dict[str, str] = {}
        for field, enum, buffered, streaming in spec:
            value = getattr(mode, field)
            if not isinstance(value, enum):
                raise TypeError(f"mode().{field} is {value!r}, not a {enum.__name__}")
            wire[field] = value.name
            if value.name == "PROCESS" and not isinstance(policy, buffered):
                problems.append(f"{field}=PROCESS but the policy is not a {buffered.__name__}")
            elif value.name == "BUFFER" and not isinstance(policy, buffered):
                problems.append(f"{field}=BUFFER but the policy is not a {buffered.__name__}")
            elif value.name == "STREAM" and not isinstance(policy, streaming):
                problems.append(f"{field}=STREAM but the policy is not a {streaming.__name__}")
        if problems:
            raise ValueError(
                "mode() does not match the implemented interfaces: " + "; ".join(problems)
            )
        caps = {
            name: isinstance(policy, getattr(sdk, interface))
            for name, interface in phases.CAPABILITIES.items()
        }
        return wire, caps

    # ---- actions -------------------------------------------------------------------------
    def _drop_filter(self, value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        return {"action": str(value.action), "headers": [str(h) for h in value.headers]}

    def _plan(self, kind: type) -> tuple[tuple[str, int], ...]:
        """How to serialize each field of an action class: 0 plain, 1 bytes, 2 drop filter."""
        plan = self._plans.get(kind)
        if plan is None:
            fields = []
            for name in getattr(kind, "__dataclass_fields__", {}):
                if name in ("is_fault", "fault"):
                    continue  # not carried by the wire contract
                how = 1 if name == "body" else 2 if name == "analytics_header_filter" else 0
                fields.append((name, how))
            plan = self._plans[kind] = tuple(fields)
        return plan

    def action_to_wire(self, phase: str, action: Any) -> dict[str, Any] | None:
        """Turn an SDK action into a wire dict, checking it is allowed for ``phase``.

        ``None`` values and empty containers are left out: on the protobuf side they mean the
        same as an absent field (an empty body or string is kept: it sets a wrapper).
        """
        if action is None:
            return None
        if not self._allowed:
            self._bind_sdk(self.sdk)
        allowed = self._allowed[phase]
        kind: type | None = type(action)
        if kind not in allowed:
            kind = next((cls for cls in allowed if isinstance(action, cls)), None)
        if kind is None:
            names = " | ".join(cls.__name__ for cls in allowed)
            raise TypeError(
                f"{PHASES[phase].hook} returned {type(action).__name__}; expected {names} or None"
            )
        out: dict[str, Any] = {"t": kind.__name__}
        for name, how in self._plan(kind):
            value = getattr(action, name)
            if value is None:
                continue
            if how == 1:
                out[name] = _b2s(value)
            elif how == 2:
                if value.headers:
                    out[name] = self._drop_filter(value)
            elif value or not isinstance(value, (dict, list, tuple)):
                out[name] = value
        return out

    # ---- operations ----------------------------------------------------------------------
    def start(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Import the policy module and run the start-up check."""
        self.policy_name = msg.get("policy", "")
        self.policy_version = msg.get("version", "")
        for entry in reversed(msg.get("sys_path") or []):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        reply: dict[str, Any] = {
            "ok": True,
            "python": platform.python_version(),
            "executable": sys.executable,
        }
        if msg.get("report"):
            reply["distributions"] = _distributions()
        stage = "import apip_sdk_core"
        try:
            self._bind_sdk(importlib.import_module("apip_sdk_core"))
            stage = f"import {msg['module']}"
            module = importlib.import_module(msg["module"])
            stage = "get_policy"
            factory = getattr(module, "get_policy", None)
            if not callable(factory):
                raise AttributeError(f"module {msg['module']} has no callable get_policy")
            self.get_policy = factory
            if msg.get("check", True):
                policy = factory(self._metadata({}), msg.get("params") or {})
                stage = "mode check"
                reply["mode"], reply["capabilities"] = self.check_mode(policy)
                _close_quietly(policy)
        except BaseException as exc:
            traceback.print_exc(file=sys.stderr)
            reply.update(ok=False, stage=stage, error=f"{stage}: {type(exc).__name__}: {exc}")
        return reply

    def init(self, iid: str, raw: dict[str, Any]) -> dict[str, Any]:
        """Create (or replace) the instance ``iid`` via ``get_policy``."""
        if self.get_policy is None:
            raise RuntimeError("worker not started")
        policy = self.get_policy(self._metadata(raw.get("metadata")), raw.get("params") or {})
        mode, caps = self.check_mode(policy)
        old = self.instances.pop(iid, None)
        if old is not None:
            _close_quietly(old)
        self.instances[iid] = policy
        return {"mode": mode, "capabilities": caps}

    def destroy(self, iids: list[str]) -> None:
        """Close and forget instances."""
        for iid in iids:
            policy = self.instances.pop(iid, None)
            if policy is not None:
                _close_quietly(policy)

    def is_cancelled(self) -> bool:
        """Poll the control pipe for cancellations of the running call."""
        fd = self._control_fd
        if fd is not None:
            while True:
                try:
                    data = os.read(fd, 4096)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self._control_fd = None
                    break
                if not data:
                    self._control_fd = None
                    break
                for i in range(0, len(data) - len(data) % 8, 8):
                    self._cancelled.add(framing.SEQ.unpack_from(data, i)[0])
        return self._current_seq in self._cancelled

    def call(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Run one hook and return the wire reply."""
        seq = int(msg.get("seq", 0))
        self._current_seq = seq
        if self._cancelled:
            self.is_cancelled()
            self._cancelled = {s for s in self._cancelled if s >= seq}
        iid = msg["iid"]
        if "init" in msg:
            self.init(iid, msg["init"])
        policy = self.instances.get(iid)
        if policy is None:
            raise LookupError(f"no policy instance {iid}")
        phase = msg["phase"]
        spec = PHASES.get(phase)
        if spec is None:
            raise ValueError(f"unknown phase {phase!r}")
        hook = getattr(policy, spec.hook, None)
        if hook is None:
            raise TypeError(f"policy {type(policy).__name__} does not implement {spec.hook}")
        if spec.context is None:
            decision = hook(_s2b(msg.get("accumulated")) or b"")
            return {"needs_more": bool(decision)}
        execution_ctx = self._execution_context(phase, msg.get("exec") or {})
        shared = self._shared(msg.get("shared") or {})
        ctx = self._context(phase, msg.get("ctx") or {}, shared)
        params = msg.get("params") or {}
        if spec.chunked:
            raw = msg.get("chunk") or {}
            chunk = self.sdk.StreamBody(
                chunk=_s2b(raw.get("chunk")) or b"",
                end_of_stream=bool(raw.get("eos")),
                index=int(raw.get("index", 0)),
            )
            action = hook(execution_ctx, ctx, chunk, params)
        else:
            action = hook(execution_ctx, ctx, params)
        # Keep this call's objects alive until its reply is sent: freeing them then happens
        # while the worker waits, not on the next call's critical path.
        self.last_call = (execution_ctx, ctx, action)
        return {"action": self.action_to_wire(phase, action), "metadata": ctx.shared.metadata}


def _deadline(raw: list[int] | None) -> datetime | None:
    if not raw:
        return None
    seconds, nanos = raw
    return datetime.fromtimestamp(seconds, tz=timezone.utc) + timedelta(microseconds=nanos // 1000)


def _close_quietly(policy: Any) -> None:
    close = getattr(policy, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            traceback.print_exc(file=sys.stderr)


def _error(exc: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def serve(sock: socket.socket, shim: Shim) -> int:
    """Answer frames until EOF or ``exit``; returns the process exit code."""
    send = sock.sendall
    read = framing.FrameReader(sock.recv).read_message
    while True:
        msg = read()
        if msg is None:
            shim.destroy(list(shim.instances))
            return 0
        op = msg.get("op")
        reply: dict[str, Any]
        try:
            if op == "call":
                if "drop" in msg:
                    shim.destroy(msg["drop"])
                reply = shim.call(msg)
                reply["ok"] = True
            elif op == "start":
                reply = shim.start(msg)
            elif op == "init":
                reply = shim.init(msg["iid"], msg)
                reply["ok"] = True
            elif op == "destroy":
                shim.destroy(msg.get("iids") or [])
                reply = {"ok": True}
            elif op == "exit":
                shim.destroy(list(shim.instances))
                send(encode_frame({"ok": True, "seq": msg.get("seq")}))
                return 0
            else:
                reply = {"ok": False, "error": f"unknown op {op!r}"}
        except MemoryError:
            raise  # over memory_mb: the worker ends (main), its call fails as a crash
        except Exception as exc:  # the policy raised: report it, keep serving
            traceback.print_exc(file=sys.stderr)
            reply = _error(exc)
        if "seq" in msg:
            reply["seq"] = msg["seq"]
        try:
            data = encode_frame(reply)
        except (TypeError, ValueError) as exc:
            data = encode_frame(
                {"ok": False, "seq": msg.get("seq"), "error": f"result not serializable: {exc}"}
            )
        send(data)
        # Free the request and the call's objects now, while idle, not after the next read.
        shim.last_call = None
        del msg, reply, data


# --------------------------------------------------------------------------------------------
# fork server
# --------------------------------------------------------------------------------------------
def _read_with_fds(sock: socket.socket, buf: bytearray, fds: list[int]) -> dict[str, Any] | None:
    """The next frame on the fork server's socket and the descriptors sent with it."""
    while True:
        if len(buf) >= 4:
            (size,) = framing.HEADER.unpack_from(buf)
            if size > framing.MAX_FRAME:
                raise framing.FrameError(f"frame of {size} bytes exceeds the limit")
            if len(buf) >= 4 + size:
                body = bytes(buf[4 : 4 + size])
                del buf[: 4 + size]
                msg: dict[str, Any] = framing.decode(body)
                return msg
        data, got, _flags, _addr = socket.recv_fds(sock, 65536, 8)
        fds.extend(got)
        if not data:
            return None
        buf += data


def _become_worker(shim: Shim, fds: list[int], parent_pid: int) -> None:
    """In a forked worker (grandchild of the fork server): take the descriptors the executor
    sent (socket, control pipe, stdout, stderr), lead a session of its own, wait until the
    executor (a subreaper) adopted it, and serve. Never returns."""
    code = 0
    try:
        sock_fd, control_fd, out_fd, err_fd = fds
        _set_name(os.path.basename(sys.executable).encode())
        os.setsid()
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        for fd in (out_fd, err_fd):
            os.close(fd)
        os.set_blocking(control_fd, False)
        shim._control_fd = control_fd
        # Our parent (the fork server's child) exits at once: then the executor is our parent.
        for _ in range(2000):
            if os.getppid() == parent_pid:
                break
            time.sleep(0.001)
        _die_with_parent(parent_pid)
        sock = socket.socket(fileno=sock_fd)
        sock.setblocking(True)
        code = serve(sock, shim)
    except (ConnectionError, BrokenPipeError):
        code = 0
    except MemoryError:
        code = framing.EXIT_MEMORY
    except BaseException:
        traceback.print_exc(file=sys.stderr)
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _fork_worker(shim: Shim, sock: socket.socket, fds: list[int], parent_pid: int) -> int:
    """Fork a worker that the executor adopts (double fork: our child exits at once, so the
    worker is re-parented to the subreaper executor, which reaps it); returns its pid."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            sock.close()
            grandchild = os.fork()
            if grandchild == 0:
                os.close(w)
                _become_worker(shim, fds, parent_pid)
            os.write(w, framing.SEQ.pack(grandchild))
        finally:
            os._exit(0)
    os.close(w)
    for fd in fds:
        os.close(fd)
    data = os.read(r, framing.SEQ.size)
    os.close(r)
    os.waitpid(child, 0)
    if len(data) != framing.SEQ.size:
        raise OSError("the forked worker did not start")
    pid: int = framing.SEQ.unpack(data)[0]
    return pid


def serve_forks(sock: socket.socket, shim: Shim, parent_pid: int) -> int:
    """The fork server: import the policy once (``start``), then fork a worker per ``fork``
    request (its descriptors arrive with the request). Workers share the imported modules
    copy-on-write; ``gc.freeze()`` keeps the garbage collector from touching (and so copying)
    the pages of everything imported before the fork."""
    import gc

    _set_name(FORK_SERVER_NAME)
    buf = bytearray()
    while True:
        fds: list[int] = []
        msg = _read_with_fds(sock, buf, fds)
        if msg is None:
            return 0
        op = msg.get("op")
        reply: dict[str, Any]
        try:
            if op == "start":
                reply = shim.start(msg)
                gc.collect()
                gc.freeze()
            elif op == "fork" and len(fds) == 4:
                reply = {"ok": True, "pid": _fork_worker(shim, sock, fds, parent_pid)}
                fds = []
            elif op == "exit":
                sock.sendall(encode_frame({"ok": True, "seq": msg.get("seq")}))
                return 0
            else:
                reply = {"ok": False, "error": f"bad fork server request {op!r}"}
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            reply = _error(exc)
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        reply["seq"] = msg.get("seq")
        sock.sendall(encode_frame(reply))


def main(argv: list[str] | None = None) -> int:
    """Parse the tiny command line, attach to the executor and serve (or fork workers)."""
    args = list(sys.argv[1:] if argv is None else argv)
    opts: dict[str, int] = {}
    while args:
        key = args.pop(0)
        if key == "--fork-server":
            opts[key] = 1
            continue
        if key not in ("--fd", "--control-fd", "--parent-pid", "--memory-mb") or not args:
            print(f"worker_shim: bad argument {key!r}", file=sys.stderr)
            return 2
        opts[key] = int(args.pop(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(opts.get("--parent-pid", 0))
    if opts.get("--memory-mb"):
        _limit_memory(opts["--memory-mb"])
    control = opts.get("--control-fd")
    if control is not None:
        os.set_blocking(control, False)
    sock = socket.socket(fileno=opts["--fd"])
    sock.setblocking(True)
    shim = Shim(control)
    try:
        if opts.get("--fork-server"):
            return serve_forks(sock, shim, opts.get("--parent-pid", 0))
        return serve(sock, shim)
    except (ConnectionError, BrokenPipeError):
        return 0
    except MemoryError:
        os._exit(framing.EXIT_MEMORY)
    finally:
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
