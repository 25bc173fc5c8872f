"""How workers start (``containment.Launch``) and what ``containment.setup`` does to the executor
process. ``setup`` changes the process it runs in for good, so those tests run it in a child."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway_executor import containment
from gateway_executor.registry import PolicyEntry

REPO = Path(__file__).resolve().parents[3]


def entry(**changes: object) -> PolicyEntry:
    fields: dict[str, object] = {
        "name": "p",
        "version": "v1.0.0",
        "module": "p.policy",
        "python": "/usr/bin/python3",
    }
    fields.update(changes)
    return PolicyEntry(**fields)  # type: ignore[arg-type]


def test_a_worker_gets_only_path_home_tmpdir_and_its_allow_list() -> None:
    launch = containment.Launch(
        homes={"p:v1.0.0": "/homes/p"},
        environ={"API_KEY": "k", "AWS_SECRET_ACCESS_KEY": "s", "PATH": "/evil", "HOME": "/root"},
    )
    env = launch.env(entry(env=("API_KEY", "NOT_SET")))
    assert env == {
        "API_KEY": "k",
        "PATH": containment.WORKER_PATH,
        "HOME": "/homes/p",
        "TMPDIR": "/homes/p",
    }


def test_the_uid_switch_only_with_separation_and_a_registry_uid() -> None:
    e = entry(uid=21000, gid=21001)
    on = containment.Launch(separate=True).popen_kwargs(e)
    assert (on["user"], on["group"], on["extra_groups"]) == (21000, 21001, [])
    assert "user" not in containment.Launch(separate=False).popen_kwargs(e)
    assert "user" not in containment.Launch(separate=True).popen_kwargs(entry())


def test_a_real_child_sees_the_scrubbed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINMENT_TEST_SECRET", "nope")
    monkeypatch.setenv("CONTAINMENT_TEST_OK", "yes")
    launch = containment.Launch(homes={"p:v1.0.0": "/tmp"})
    out = subprocess.run(
        [sys.executable, "-I", "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
        capture_output=True,
        text=True,
        check=True,
        **launch.popen_kwargs(entry(env=("CONTAINMENT_TEST_OK",))),
    ).stdout
    seen = json.loads(out)
    seen.pop("LC_CTYPE", None)  # CPython's C-locale coercion may add it in the child itself
    assert seen == {
        "CONTAINMENT_TEST_OK": "yes",
        "PATH": containment.WORKER_PATH,
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
    }


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_spawning_puts_the_thread_on_the_workers_cpus_and_back() -> None:
    mine = os.sched_getaffinity(0)
    one = frozenset({min(mine)})
    os.sched_setaffinity(0, one)
    try:
        launch = containment.Launch(worker_cpus=lambda: frozenset(mine))
        with launch.spawning():
            assert os.sched_getaffinity(0) == mine
        assert os.sched_getaffinity(0) == one
    finally:
        os.sched_setaffinity(0, mine)


# ---- setup(), in a child process --------------------------------------------------------------

#: Runs setup() for one policy, then starts ``sh`` the way a worker starts, and reports both.
SETUP = r"""
import ctypes, json, os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from gateway_executor import containment
from gateway_executor.registry import PolicyEntry
uid = int(sys.argv[2]) if sys.argv[2] else None
e = PolicyEntry("p", "v1.0.0", "p.policy", "/bin/sh", uid=uid, gid=uid, env=("ALLOWED",),
                home=sys.argv[3])
c = containment.setup([e])
def status(text):
    keep = ("CapInh", "CapPrm", "CapEff", "CapAmb", "NoNewPrivs", "Uid", "Gid", "Groups")
    return {k: v.strip() for k, _, v in (l.partition(":") for l in text.splitlines()) if k in keep}
child = subprocess.run(["/bin/sh", "-c", "cat /proc/self/status; echo @@env; env"],
                       capture_output=True, text=True, **c.launch.popen_kwargs(e))
st, _, env = child.stdout.partition("@@env\n")
print(json.dumps({
    "off": [[o.name, o.detail] for o in c.off],
    "separate": c.launch.separate,
    "self": status(open("/proc/self/status").read()),
    "dumpable": ctypes.CDLL(None).prctl(3, 0, 0, 0, 0),
    "child": status(st),
    "child_env": sorted(l.partition("=")[0] for l in env.splitlines() if "=" in l),
    "child_err": child.stderr,
}))
"""


def run_setup(tmp_path: Path, uid: int | None, *prefix: str) -> dict[str, object]:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    if uid is not None:
        os.chown(home, uid, uid)
    out = subprocess.run(
        [*prefix, sys.executable, "-I", "-c", SETUP, str(REPO), str(uid or ""), str(home)],
        capture_output=True,
        text=True,
        env={**os.environ, "ALLOWED": "a", "SECRET_TOKEN": "s"},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not sys.platform.startswith("linux"),
    reason="switching uids needs root (CAP_SETUID) on Linux",
)
NOBODY = 65534
KEPT = f"{containment.KEPT_CAPS:016x}"
ZERO = "0" * 16


@needs_root
def test_setup_keeps_three_capabilities_and_the_worker_gets_none(tmp_path: Path) -> None:
    r = run_setup(tmp_path, NOBODY)
    assert r["separate"] is True and r["off"] == []
    me = r["self"]
    assert isinstance(me, dict)
    assert (me["CapEff"], me["CapPrm"], me["CapInh"], me["CapAmb"]) == (KEPT, KEPT, ZERO, ZERO)
    assert me["NoNewPrivs"] == "1" and r["dumpable"] == 0
    child = r["child"]
    assert isinstance(child, dict), r["child_err"]
    assert child["Uid"].split() == [str(NOBODY)] * 4 and child["Gid"].split() == [str(NOBODY)] * 4
    assert child["Groups"] == ""
    assert (child["CapEff"], child["CapPrm"], child["CapInh"], child["CapAmb"]) == (ZERO,) * 4
    assert child["NoNewPrivs"] == "1"
    assert r["child_env"] == ["ALLOWED", "HOME", "PATH", "PWD", "TMPDIR"]  # PWD: sh's own


@needs_root
def test_without_the_capabilities_setup_reports_uid_separation_off(tmp_path: Path) -> None:
    # Root without any capability, as in a container started with --cap-drop ALL.
    r = run_setup(tmp_path, NOBODY, "setpriv", "--bounding-set=-all", "--inh-caps=-all")
    assert r["separate"] is False
    off = dict(r["off"])  # type: ignore[arg-type]
    assert list(off) == [containment.UIDS]
    assert "lacks CAP_SETUID, CAP_SETGID or CAP_KILL" in off[containment.UIDS]
    child = r["child"]
    assert isinstance(child, dict)
    assert child["Uid"].split()[0] == "0"  # the executor's uid ...
    assert child["NoNewPrivs"] == "1" and child["CapEff"] == ZERO  # ... and still nothing to gain
    assert r["child_env"] == ["ALLOWED", "HOME", "PATH", "PWD", "TMPDIR"]


@needs_root
def test_a_home_that_is_not_private_is_reported(tmp_path: Path) -> None:
    r = run_setup(tmp_path, None)  # owned by root, not by the policy's uid (none)
    off = dict(r["off"])  # type: ignore[arg-type]
    assert "gives no policy a uid of its own" in off[containment.UIDS]
