"""One uid per policy, built into the image: the manifest's ``env`` allow-list, the uid
allocation, the registry fields, ``users.json`` and ``stage_tool.py users``."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from gateway_builder import defaults
from gateway_builder.cli import main
from gateway_builder.manifest import load_manifests
from gateway_builder.plan import allocate_uids
from gateway_builder.render.templating import template_dir
from gateway_builder.render.users import MAX_USER_NAME, policy_user
from gateway_executor.registry import (
    PolicyEntry,
    RegistryError,
    parse_registry,
    registry_document,
)

LOCATED = re.compile(r"^error: (?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<rest>.+)$")


def manifest(tmp_path: Path, env: str) -> Path:
    (tmp_path / "pol").mkdir(exist_ok=True)
    (tmp_path / "pol" / "policy.py").write_text("def get_policy(metadata, params):\n    return 1\n")
    path = tmp_path / "python-build.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: v1
            policies:
              - name: one
                source: {{path: ./pol}}
                env: {env}
            """
        )
    )
    return path


def test_the_env_allow_list_reaches_the_spec_in_order(tmp_path: Path) -> None:
    path = manifest(tmp_path, "[OPENAI_API_KEY, _lower_ok, TZ]")
    spec = load_manifests(None, path).python_policies()[0]
    assert spec.env == ("OPENAI_API_KEY", "_lower_ok", "TZ")


def test_no_env_means_none(tmp_path: Path) -> None:
    path = manifest(tmp_path, "[]")
    assert load_manifests(None, path).python_policies()[0].env == ()


@pytest.mark.parametrize(
    ("env", "col", "field", "fragment"),
    [
        ('[OK, "bad-name"]', 15, "policies[0].env[1]", "environment variable name"),
        ("[PATH]", 11, "policies[0].env[0]", "which the executor sets"),
        ("[TMPDIR]", 11, "policies[0].env[0]", "which the executor sets"),
        ("[A, B, A]", 10, "policies[0].env", "A is listed twice"),
        ("SECRET", 10, "policies[0].env", "a list"),
        ("[1]", 11, "policies[0].env[0]", "string"),
    ],
)
def test_a_bad_allow_list_is_one_located_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    env: str,
    col: int,
    field: str,
    fragment: str,
) -> None:
    path = manifest(tmp_path, env)
    assert main(["validate", "--python-build-file", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    m = LOCATED.match(err[0])
    assert m and m["file"].endswith("python-build.yaml"), err
    assert (int(m["line"]), int(m["col"])) == (5, col), err[0]
    assert m["rest"].startswith(f"{field}: ") and fragment in m["rest"], err[0]


# ---- uids --------------------------------------------------------------------------------------


def test_uids_are_deterministic_distinct_and_in_range() -> None:
    names = [f"policy-{i}" for i in range(300)]
    uids = allocate_uids(names)
    assert uids == allocate_uids(reversed(names))
    assert len(set(uids.values())) == len(names)
    first, count = defaults.POLICY_UID_FIRST, defaults.POLICY_UID_COUNT
    assert all(first <= u < first + count for u in uids.values())
    assert defaults.RUNTIME_UID not in uids.values()


def test_adding_or_removing_a_policy_keeps_every_other_uid() -> None:
    base = allocate_uids(["prompt-guard", "token-scorer", "prompt-enrichment"])
    more = allocate_uids(["prompt-guard", "token-scorer", "prompt-enrichment", "new-one"])
    assert {k: more[k] for k in base} == base
    fewer = allocate_uids(["prompt-guard", "token-scorer"])
    assert fewer == {k: base[k] for k in fewer}


def test_a_hash_collision_moves_the_later_name_to_the_next_free_uid() -> None:
    count = defaults.POLICY_UID_COUNT
    slots: dict[int, str] = {}
    pair = None
    for i in range(5 * count):  # bounded: a collision among 10000 slots comes far sooner
        name = f"p{i}"
        slot = allocate_uids([name])[name]
        if slot in slots:
            pair = (slots[slot], name)
            break
        slots[slot] = name
    assert pair is not None
    first, second = sorted(pair)
    uids = allocate_uids(pair)
    assert uids[first] == allocate_uids([first])[first]
    assert uids[second] == uids[first] + 1 or (
        uids[first] == defaults.POLICY_UID_FIRST + count - 1
        and uids[second] == defaults.POLICY_UID_FIRST
    )


def test_user_names_fit_and_stay_distinct() -> None:
    assert policy_user("prompt-guard", 26818) == "pol-prompt-guard"
    long_a, long_b = "a" * 40 + "-one", "a" * 40 + "-two"
    ua, ub = policy_user(long_a, 21000), policy_user(long_b, 21001)
    assert len(ua) == len(ub) == MAX_USER_NAME and ua != ub and ua.endswith("-21000")


# ---- registry ----------------------------------------------------------------------------------


def entry(**changes: object) -> dict[str, object]:
    doc = registry_document([PolicyEntry("p", "v1.0.0", "p.policy", "/opt/venvs/p/bin/python")])
    raw: dict[str, object] = doc["policies"][0]
    raw.update(changes)
    return doc


def test_the_registry_carries_uid_gid_env_and_home() -> None:
    doc = entry(uid=21000, gid=21000, env=["TZ", "API_KEY"], home="/var/lib/gateway-policies/p")
    (parsed,) = parse_registry(json.loads(json.dumps(doc)))
    assert (parsed.uid, parsed.gid, parsed.env, parsed.home) == (
        21000,
        21000,
        ("TZ", "API_KEY"),
        "/var/lib/gateway-policies/p",
    )
    assert registry_document([parsed]) == doc


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"uid": 0, "gid": 0}, "never root"),
        ({"uid": 21000}, "set together with uid"),
        ({"uid": True, "gid": 1}, "positive integer"),
        ({"env": ["PATH"]}, "environment variable names"),
        ({"env": "TZ"}, "environment variable names"),
        ({"home": 3}, "a string"),
    ],
)
def test_a_bad_registry_entry_is_refused(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(RegistryError, match=fragment):
        parse_registry(entry(**changes))


# ---- stage_tool.py users (what the image's users stage runs) -----------------------------------


def stage_tool(export: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "stage_tool_users", template_dir() / "stage_tool.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.EXPORT_ROOT = export  # type: ignore[attr-defined]
    return module


def test_file_capabilities_are_permitted_only() -> None:
    caps = stage_tool(Path("/nonexistent")).file_caps(["kill", "setgid", "setuid"])
    magic, permitted, inheritable, high_p, high_i = struct.unpack("<5I", caps)
    assert magic == 0x02000000  # revision 2, effective bit clear
    assert permitted == (1 << 5) | (1 << 6) | (1 << 7)
    assert inheritable == high_p == high_i == 0


def runtime_files(tmp_path: Path, extra_passwd: str = "") -> Path:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\nwso2:x:10001:10001::/home/wso2:/usr/sbin/nologin\n"
        + extra_passwd
    )
    (runtime / "group").write_text("root:x:0:\nwso2:x:10001:\n")
    shutil.copy("/bin/true", runtime / "setpriv")
    return runtime


SPEC = {
    "runtime_uid": 10001,
    "runtime_gid": 10001,
    "homes_dir": "/var/lib/gateway-policies",
    "launcher": "/usr/libexec/gateway-runtime/setpriv-caps",
    "capabilities": ["kill", "setgid", "setuid"],
    "policies": [
        {
            "name": "a",
            "user": "pol-a",
            "uid": 21000,
            "gid": 21000,
            "home": "/var/lib/gateway-policies/a",
        }
    ],
}


@pytest.mark.skipif(os.geteuid() != 0, reason="chown and security.capability need root")
def test_users_stage_writes_users_homes_and_the_launcher(tmp_path: Path) -> None:
    export = tmp_path / "export"
    tool = stage_tool(export)
    spec = tmp_path / "users.json"
    spec.write_text(json.dumps(SPEC))
    tool.main(
        ["users", "--spec", str(spec), "--runtime", str(runtime_files(tmp_path)), "--epoch", "1000"]
    )
    passwd = (export / "etc/passwd").read_text().splitlines()
    assert passwd[:2] == [
        "root:x:0:0:root:/root:/bin/bash",
        "wso2:x:10001:10001::/home/wso2:/usr/sbin/nologin",
    ]
    assert (
        passwd[2]
        == "pol-a:x:21000:21000:gateway policy a:/var/lib/gateway-policies/a:/usr/sbin/nologin"
    )
    assert (export / "etc/group").read_text().splitlines()[-1] == "pol-a:x:21000:"
    home = (export / "var/lib/gateway-policies/a").stat()
    assert (home.st_uid, home.st_gid, home.st_mode & 0o7777) == (21000, 21000, 0o700)
    launcher = export / "usr/libexec/gateway-runtime/setpriv-caps"
    st = launcher.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 10001, 0o750)
    assert os.getxattr(launcher, "security.capability") == tool.file_caps(SPEC["capabilities"])
    assert {p.lstat().st_mtime for p in export.rglob("*")} == {1000}


@pytest.mark.parametrize(
    "taken", ["pol-a:x:300:300::/:/bin/sh\n", "other:x:21000:21000::/:/bin/sh\n"]
)
def test_users_stage_refuses_a_name_or_uid_the_runtime_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], taken: str
) -> None:
    tool = stage_tool(tmp_path / "export")
    spec = tmp_path / "users.json"
    spec.write_text(json.dumps(SPEC))
    runtime = runtime_files(tmp_path, taken)
    with pytest.raises(SystemExit) as info:
        tool.main(["users", "--spec", str(spec), "--runtime", str(runtime), "--epoch", "1"])
    assert info.value.code == 1
    assert "policy a: user pol-a, uid 21000 or gid 21000 is taken" in capsys.readouterr().err
