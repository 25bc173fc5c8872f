"""Memory cost of process isolation (``nox -s bench``): PSS of the executor with its workers
against a single-process executor of the upstream kind running the same policies.

* ``executor``: ``python -m gateway_executor`` with the default image's three policies
  (``policy_sources/``, each in a venv of its own with its locked dependencies: prompt-guard on
  Python 3.11 with 2 workers, token-scorer on 3.12 with numpy and 1 worker, prompt-enrichment
  per-call, so no resident process), every policy initialised and called once with its first
  sample over gRPC;
* ``upstream kind``: one Python process (the executor's interpreter and grpcio) serving gRPC
  with all three policies imported and instantiated in it, each hook run once in-process with
  the same samples: what the upstream executor (threads in one process) holds;
* per extra worker: the executor again with prompt-guard at 4 workers; (that - default) / 2.

PSS (proportional set size, ``/proc/<pid>/smaps_rollup``) splits pages shared between processes
(interpreter, libraries, copy-on-write pages of forked workers) among them, so the sums add up.
Targets: executor / upstream kind <= 1.5x, <= 4 MiB PSS per extra worker.

    python benchmarks/bench_memory.py [--extra-workers 4] [--keep]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway_executor.client import ExecutorClient  # noqa: E402
from gateway_executor.samples import load_samples, sample_request  # noqa: E402

SDK = "apip-sdk-core==0.2.3"
#: The default image's policies: (name, Python, locked dependencies, isolation, workers).
POLICIES: list[tuple[str, str, list[str], str, int]] = [
    ("prompt-enrichment", "3.11", ["jinja2==3.1.4", "markupsafe==2.1.5"], "per-call", 2),
    ("prompt-guard", "3.11", ["markupsafe==3.0.2"], "worker", 2),
    ("token-scorer", "3.12", ["numpy==2.1.3"], "worker", 1),
]
VERSION = "v1.0.0"

UPSTREAM_KIND = textwrap.dedent(
    """
    import json, sys, threading
    from concurrent import futures
    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    import grpc
    from gateway_executor import translate
    from gateway_executor.proto import python_executor_pb2 as pb
    from gateway_executor.proto import python_executor_pb2_grpc as pb_grpc
    from gateway_executor.samples import load_samples, sample_request
    from gateway_executor.worker_shim import Shim
    import importlib
    from pathlib import Path

    spec = json.loads(Path(sys.argv[4]).read_text())
    shims = {}
    for name, module, params, samples in spec:
        shim = Shim(None)
        shim.start({"policy": name, "version": "v1.0.0", "module": module, "sys_path": [],
                    "params": params, "check": True, "report": False})
        shim.init("i", {"metadata": {}, "params": params})
        sample = load_samples(name, Path(samples))[0]
        req = sample_request(sample, request_id="r", instance_id="i", policy_version="v1.0.0")
        kind = translate.PAYLOADS[req.WhichOneof("payload")]
        msg = translate.request_to_wire(req, kind)
        msg.update(op="call", iid="i", seq=1)
        assert "action" in shim.call(msg)
        shims[name] = shim

    class Service(pb_grpc.PythonExecutorServiceServicer):
        def HealthCheck(self, request, context):
            return pb.HealthCheckResponse(ready=True, loaded_policies=len(shims))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    pb_grpc.add_PythonExecutorServiceServicer_to_server(Service(), server)
    server.add_insecure_port("unix:" + sys.argv[1])
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()
    """
)


def find_python(version: str) -> str:
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    hits = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))
    found = hits[-1] if hits else shutil.which(f"python{version}")
    if not found:
        raise SystemExit(f"no Python {version} interpreter on this machine")
    return found


def make_venv(where: Path, version: str, deps: list[str]) -> Path:
    """A venv with the SDK and ``deps`` (uv: its cache first, then the index)."""
    uv = Path(sys.executable).parent / "uv"
    python = where / "bin" / "python"
    subprocess.run([find_python(version), "-m", "venv", "--without-pip", str(where)], check=True)
    env = {**os.environ, "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never"}
    for extra in (["--offline"], []):
        cmd = [str(uv), "pip", "install", "-q", "--python", str(python), *extra, SDK, *deps]
        if subprocess.run(cmd, env=env, capture_output=True).returncode == 0:
            return python
    raise SystemExit(f"cannot install {deps} for Python {version}")


def pss_kib(pid: int) -> int:
    """PSS of one process, KiB (``/proc/<pid>/smaps_rollup``)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """Live processes below ``pid``."""
    kids: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2 :].split()
        if rest[0] != "Z":
            kids.setdefault(int(rest[1]), []).append(int(text.split(" ", 1)[0]))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def settle(pids: list[int], seconds: float = 2.0) -> None:
    """Let start-up garbage be freed and pages settle before measuring."""
    time.sleep(seconds)


def run_executor(
    tmp: Path, pkgs: Path, pythons: dict[str, Path], workers: dict[str, int], tag: str
) -> tuple[int, dict[str, int]]:
    """Start the executor, init and call every policy once; returns (total PSS KiB, by role)."""
    entries: list[dict[str, Any]] = []
    for name, _py, _deps, isolation, default_workers in POLICIES:
        manifest = json.loads((ROOT / "registry" / "policy-registry.json").read_text())
        params = next(p["params"] for p in manifest["policies"] if p["name"] == name)
        entries.append(
            {
                "name": name,
                "version": VERSION,
                "module": f"{name.replace('-', '_')}.policy",
                "sys_path": [str(pkgs)],
                "python": str(pythons[name]),
                "isolation": isolation,
                "workers": workers.get(name, default_workers),
                "params": params,
                "timeout_ms": 30000,
            }
        )
    registry = tmp / f"registry-{tag}.json"
    registry.write_text(
        json.dumps(
            {"format": "gateway-builder/policy-registry", "format_version": 1, "policies": entries}
        )
    )
    sock, ready = tmp / f"ex-{tag}.sock", tmp / f"ready-{tag}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway_executor",
            "--registry",
            str(registry),
            "--listen",
            str(sock),
            "--ready-file",
            str(ready),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        end = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > end:
                raise SystemExit("the executor did not become ready")
            time.sleep(0.05)
        client = ExecutorClient(str(sock), timeout=60)
        for name, *_ in POLICIES:
            sample = load_samples(name, ROOT / "policy_sources" / name / "samples")[0]
            iid = client.init_policy(name, VERSION, sample.params).instance_id
            for i in range(4):  # reach more than one worker
                req = sample_request(
                    sample, request_id=f"{name}-{i}", instance_id=iid, policy_version=VERSION
                )
                resp = client.execute(req, timeout=60)
                if resp.WhichOneof("payload") == "error":
                    raise SystemExit(f"{name}: {resp.error.message}")
        client.close()
        kids = descendants(proc.pid)
        settle([proc.pid, *kids])
        roles = {"executor": pss_kib(proc.pid)}
        for pid in descendants(proc.pid):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            python = cmd[0].decode()
            who = next((n for n, p in pythons.items() if str(p) == python), "other")
            if Path(f"/proc/{pid}/comm").read_text().strip() == "policy-forks":
                who += " fork server"
            roles[f"{who} pid {pid}"] = pss_kib(pid)
        return sum(roles.values()), roles
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_upstream_kind(tmp: Path, pkgs: Path, combined: Path) -> int:
    """The single-process executor; returns its PSS, KiB."""
    manifest = json.loads((ROOT / "registry" / "policy-registry.json").read_text())
    spec = []
    for name, *_ in POLICIES:
        params = next(p["params"] for p in manifest["policies"] if p["name"] == name)
        samples = ROOT / "policy_sources" / name / "samples"
        spec.append([name, f"{name.replace('-', '_')}.policy", params, str(samples)])
    spec_file = tmp / "upstream.json"
    spec_file.write_text(json.dumps(spec))
    sock = tmp / "upstream.sock"
    site = glob.glob(str(combined.parent.parent / "lib" / "python3.*" / "site-packages"))[0]
    proc = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM_KIND, str(sock), str(pkgs), site, str(spec_file)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise SystemExit("the upstream-kind executor did not start")
        client = ExecutorClient(str(sock), timeout=30)
        client.health()
        client.close()
        settle([proc.pid])
        return pss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra-workers", type=int, default=4, help="prompt-guard workers, 2nd run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    if not Path("/proc/self/smaps_rollup").exists():
        print("SKIP  no /proc/<pid>/smaps_rollup (Linux 4.14+)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        pkgs = tmp / "pkgs"
        pkgs.mkdir()
        pythons: dict[str, Path] = {}
        for name, version, deps, *_ in POLICIES:
            (pkgs / name.replace("-", "_")).symlink_to(ROOT / "policy_sources" / name)
            pythons[name] = make_venv(tmp / f"venv-{name}", version, deps)
        # The upstream kind: one interpreter (3.11, the executor's) and one site-packages with
        # every policy's dependencies (MarkupSafe: one version for both policies).
        combined = make_venv(
            tmp / "venv-combined",
            f"{sys.version_info.major}.{sys.version_info.minor}",
            ["jinja2==3.1.4", "markupsafe==3.0.2", "numpy==2.1.3"],
        )
        upstream = run_upstream_kind(tmp, pkgs, combined)
        total, roles = run_executor(tmp, pkgs, pythons, {}, "default")
        extra = args.extra_workers
        total_more, roles_more = run_executor(tmp, pkgs, pythons, {"prompt-guard": extra}, "more")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    # Only prompt-guard's processes (fork server included): the rest does not change, and
    # leaving it out keeps the other processes' run-to-run noise out of the estimate.
    def guard(r: dict[str, int]) -> int:
        return sum(kib for role, kib in r.items() if role.startswith("prompt-guard"))

    per_worker = (guard(roles_more) - guard(roles)) / max(extra - 2, 1)
    print(f"\nPSS of the default image's policies (Python {sys.version.split()[0]})\n")
    print(f"| {'process':<32} | {'PSS MiB':>8} |")
    print(f"|{'-' * 34}|{'-' * 10}|")
    for role, kib in roles.items():
        print(f"| {role:<32} | {kib / 1024:>8.1f} |")
    print(f"| {'executor + workers':<32} | {total / 1024:>8.1f} |")
    print(f"| {'upstream kind (one process)':<32} | {upstream / 1024:>8.1f} |")
    print(f"| {f'executor, prompt-guard x{extra}':<32} | {total_more / 1024:>8.1f} |")
    ratio = total / upstream
    print()
    print(
        f"{'PASS' if ratio <= 1.5 else 'FAIL'}  executor with workers / upstream kind <= 1.5x: "
        f"{ratio:.2f}x"
    )
    print(
        f"{'PASS' if per_worker <= 4096 else 'FAIL'}  PSS per extra worker <= 4 MiB: "
        f"{per_worker / 1024:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
