"""The worker wire format: how the executor and a worker shim exchange messages.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON; the control
pipe carries 8-byte big-endian sequence numbers of cancelled calls. Both ends decode with the
JSON scanner only, so nothing executable crosses the socket in either direction.

Standard library only, Python 3.10 and later: the shim loads this file by path inside a
policy's venv, where ``gateway_executor`` is not installed.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct(">I")
#: A cancelled call's sequence number on the control pipe.
SEQ = struct.Struct(">Q")
#: Largest frame either end accepts. A body is at most the gRPC message limit (50 MiB), but as
#: JSON its bytes grow (two UTF-8 bytes above 0x7f, escapes for control characters).
MAX_FRAME = 256 * 1024 * 1024
_CHUNK = 65536
#: A worker's exit status when it ran out of its memory limit (``--memory-mb``).
EXIT_MEMORY = 86
#: Address space a worker may map beyond its ``memory_mb`` (RLIMIT_AS = memory_mb + this):
#: reservations that are never touched (thread stacks, malloc arenas, libraries) stay possible,
#: while shared mappings, which RLIMIT_DATA does not count, stay bounded.
ADDRESS_SPACE_HEADROOM_MB = 2048


class FrameError(ValueError):
    """Bytes that are not a valid frame: too large, not UTF-8, not JSON."""


def json_codec() -> tuple[Callable[[Any], str], Callable[[str], Any]]:
    """Compact JSON encode/decode that call the C encoder and scanner directly.

    ``JSONEncoder.encode`` builds a new C encoder and goes through two Python frames per call;
    on the per-call path that matters. Falls back to the public API if the C parts are missing
    or do not behave as expected.
    """
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
    decoder = json.JSONDecoder()
    try:
        from json.encoder import (  # type: ignore[attr-defined]
            c_make_encoder,
            encode_basestring,
        )

        if c_make_encoder is None:
            raise ImportError("no C encoder")
        c_encode = c_make_encoder(
            None, encoder.default, encode_basestring, None, ":", ",", False, False, True
        )
        scan = decoder.scan_once  # type: ignore[attr-defined]

        def dumps(obj: Any) -> str:
            return "".join(c_encode(obj, 0))

        def loads(text: str) -> Any:
            try:
                obj, end = scan(text, 0)
            except StopIteration as exc:
                raise ValueError(f"invalid JSON at character {exc.value}") from None
            if end != len(text):
                raise ValueError(f"extra data after the JSON value at character {end}")
            return obj

        sample = {"a": [1, 2.5, "\u00ff\n", None, True], "b": {}}
        if dumps(sample) != encoder.encode(sample) or loads(dumps(sample)) != sample:
            raise ValueError("C JSON functions behave differently")
        return dumps, loads
    except Exception:
        return encoder.encode, decoder.decode


encode_json, decode_json = json_codec()


def encode(obj: Any) -> bytes:
    """``obj`` as one frame (lone surrogates pass through, as :func:`decode` accepts them)."""
    data = encode_json(obj).encode("utf-8", "surrogatepass")
    return HEADER.pack(len(data)) + data


def decode(body: bytes) -> Any:
    """A frame body's JSON value; :class:`FrameError` if it is not UTF-8 JSON."""
    try:
        return decode_json(body.decode("utf-8", "surrogatepass"))
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise FrameError(f"undecodable frame: {exc}") from exc


class FrameReader:
    """Reads frames from ``recv`` (``socket.recv``, or a wrapper that enforces a deadline);
    usually one ``recv`` per frame."""

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self.recv = recv
        #: Bytes received beyond the last frame (the start of the next one).
        self.buffer = b""

    def read(self) -> bytes | None:
        """The next frame's body; ``None`` at EOF before it began.

        Raises ``EOFError`` when the stream ends inside a frame and :class:`FrameError` when
        the announced size exceeds :data:`MAX_FRAME`.
        """
        recv = self.recv
        buf = self.buffer or recv(_CHUNK)
        while len(buf) < 4:
            more = recv(_CHUNK) if buf else b""
            if not more:
                self.buffer = b""
                if buf:
                    raise EOFError("connection closed inside a frame header")
                return None
            buf += more
        (size,) = HEADER.unpack_from(buf)
        if size > MAX_FRAME:
            raise FrameError(f"frame of {size} bytes exceeds the limit")
        need = size + 4
        if len(buf) < need:
            parts = [buf]
            have = len(buf)
            while have < need:
                more = recv(min(need - have, 1 << 20))
                if not more:
                    self.buffer = b""
                    raise EOFError("connection closed inside a frame")
                parts.append(more)
                have += len(more)
            buf = b"".join(parts)
        self.buffer = buf[need:]
        return buf[4:need]

    def read_message(self) -> Any:
        """The next frame's decoded value; ``None`` at EOF (also inside a frame)."""
        try:
            body = self.read()
        except EOFError:
            return None
        return None if body is None else decode(body)


__all__ = [
    "ADDRESS_SPACE_HEADROOM_MB",
    "EXIT_MEMORY",
    "HEADER",
    "MAX_FRAME",
    "SEQ",
    "FrameError",
    "FrameReader",
    "decode",
    "decode_json",
    "encode",
    "encode_json",
    "json_codec",
]
