"""Regenerate the committed gRPC stubs from ``python_executor.proto``.

Run from anywhere: ``python -m gateway_executor.proto.generate [OUT_DIR]``. Without OUT_DIR the
stubs are written next to the ``.proto`` file. Needs ``grpcio-tools`` (a development dependency;
the image only ships the generated files). The unit test regenerates into a temporary directory
and compares bytes, so a stale stub fails CI.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
ROOT = PROTO_DIR.parent.parent
PROTO_REL = "gateway_executor/proto/python_executor.proto"
GENERATED = ("python_executor_pb2.py", "python_executor_pb2.pyi", "python_executor_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (grpcio-tools) and write the three stub files into ``out_dir``."""
    import grpc_tools
    from grpc_tools import protoc  # imported lazily: not present in the image

    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(ROOT / PROTO_REL),
        ]
        rc = protoc.main(args)
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}")
        written = []
        for name in GENERATED:
            src = Path(tmp) / "gateway_executor" / "proto" / name
            dst = out_dir / name
            tmp_dst = dst.with_suffix(dst.suffix + ".tmp")
            tmp_dst.write_bytes(src.read_bytes())
            os.replace(tmp_dst, dst)
            written.append(dst)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else PROTO_DIR
    for path in generate(out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
