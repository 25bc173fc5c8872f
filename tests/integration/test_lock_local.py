"""Lock semantics against a real local index: per-Python pins, isolation, incremental relock,
upgrades, --check with a diff, byte-identical relock, resolver errors, the CLI."""

from __future__ import annotations

import json
import os
import tarfile
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from gwb_factories import GitRepo, LocalIndex, write_policy

from gateway_builder import defaults
from gateway_builder.cache import Cache
from gateway_builder.cli import main
from gateway_builder.errors import BuildError, InputError, StaleLockError
from gateway_builder.lock.file import Lock, read_lock
from gateway_builder.models import BaseImages, PythonBase
from gateway_builder.options import LockOptions, RenderOptions, SessionOptions
from gateway_builder.pipeline import Session
from gateway_builder.plan import BuildPlan

pytestmark = pytest.mark.integration


class Project:
    """A temp project: manifests/python-build.yaml + policies/<name>/ + a cache."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifests = root / "manifests"
        self.manifests.mkdir(parents=True)
        self.cache = root / "cache"
        self.manifest = self.manifests / "python-build.yaml"
        self.lock = self.manifests / defaults.LOCK_FILE_NAME

    def policy(self, name: str, requirements: list[str], **kw: object) -> Path:
        return write_policy(self.root / "policies" / name, name, requirements=requirements, **kw)  # type: ignore[arg-type]

    def write_manifest(self, entries: str, default_python: str = "3.11") -> None:
        self.manifest.write_text(
            f'version: v1\ndefaults:\n  python: "{default_python}"\npolicies:\n'
            + textwrap.indent(textwrap.dedent(entries).strip("\n"), "  ")
            + "\n"
        )

    def run(self, *args: str) -> int:
        return main(
            [
                args[0],
                "--python-build-file",
                str(self.manifest),
                "--cache-dir",
                str(self.cache),
                *args[1:],
            ]
        )

    def read(self) -> Lock:
        return read_lock(self.lock)


def pins(lock: Lock, policy: str, platform: str = "x86_64") -> dict[str, str]:
    entry = lock.policy(policy)
    assert entry is not None
    return {p.name: p.version for p in entry.env.packages[platform]}


@pytest.fixture
def project(tmp_path: Path, local_index: LocalIndex, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv(defaults.INDEX_URL_ENV, local_index.http_url)
    return Project(tmp_path / "project")


def path_entry(name: str, extra: str = "") -> str:
    return f"- name: {name}\n  source:\n    path: ../policies/{name}\n{extra}"


def test_multi_python_each_policy_pinned_for_its_version(project: Project) -> None:
    project.policy("old-py", ["tinydep"])
    project.policy("new-py", ["tinydep"], python_version="3.12")
    project.write_manifest(path_entry("old-py", '  python: "3.10"\n') + path_entry("new-py"))
    assert project.run("lock") == 0
    lock = project.read()
    # tinydep 2.0.0 requires Python >= 3.11; 2.1.0rc1 is a pre-release.
    assert pins(lock, "old-py") == {"apip-sdk-core": "0.2.3", "tinydep": "1.1.0"}
    assert pins(lock, "new-py") == {"apip-sdk-core": "0.2.3", "tinydep": "2.0.0"}
    pythons = {p.name: p.env.python for p in lock.policies}
    assert pythons == {"old-py": "3.10", "new-py": "3.12"}  # 3.12 from python_version.txt
    # Executor and installer sections are locked with hashes too.
    assert {p.name for p in lock.executor.packages["x86_64"]} == {"grpcio", "protobuf"}
    assert [p.name for p in lock.installer.packages["x86_64"]] == ["pip"]
    new_py = lock.policy("new-py")
    assert new_py is not None
    for pkg in new_py.env.packages["x86_64"]:
        assert len(pkg.hashes) == 1 and pkg.hashes[0].startswith("sha256:")
        assert pkg.files[0].endswith(".whl")


def test_conflicting_policies_lock_independently(project: Project) -> None:
    project.policy("one", ["tinydep==1.0.0"])
    project.policy("two", ["tinydep==2.0.0"])
    project.write_manifest(path_entry("one") + path_entry("two"))
    assert project.run("lock") == 0
    lock = project.read()
    assert pins(lock, "one")["tinydep"] == "1.0.0"
    assert pins(lock, "two")["tinydep"] == "2.0.0"


def test_relock_is_byte_identical_and_leaves_the_file_alone(project: Project) -> None:
    project.policy("one", ["tinytop"])
    project.write_manifest(path_entry("one"))
    assert project.run("lock") == 0
    first = project.lock.read_bytes()
    os.utime(project.lock, (1_000_000, 1_000_000))
    assert project.run("lock") == 0
    assert project.lock.read_bytes() == first
    assert project.lock.stat().st_mtime == 1_000_000  # not rewritten
    # A fresh cache gives the same bytes too.
    project.cache = project.root / "cache2"
    project.lock.unlink()
    assert project.run("lock") == 0
    assert project.lock.read_bytes() == first


def test_incremental_relock_keeps_unchanged_policies_and_existing_pins(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.policy("one", ["tinydep==1.0.0"])
    project.policy("two", ["tinydep==1.0.0"])
    project.write_manifest(path_entry("one") + path_entry("two"))
    assert project.run("lock") == 0
    before = project.read()
    # Relax one's pin and add a dependency: its old pin is kept as a preference.
    project.policy("one", ["tinydep>=1", "tinytop"])
    capsys.readouterr()
    assert project.run("lock", "--json") == 0
    out = capsys.readouterr().out
    result = json.loads(out)
    assert result["resolved"] == ["policy 'one'"]
    assert "policy 'two'" in result["kept"] and "the executor" in result["kept"]
    after = project.read()
    assert pins(after, "one") == {"apip-sdk-core": "0.2.3", "tinydep": "1.0.0", "tinytop": "1.0.0"}
    assert after.policy("two") == before.policy("two")


def test_upgrade_policy_and_upgrade_package(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.policy("one", ["tinydep==1.0.0"])
    project.policy("two", ["tinydep==1.0.0"])
    project.write_manifest(path_entry("one") + path_entry("two"))
    assert project.run("lock") == 0
    for name in ("one", "two"):
        project.policy(name, ["tinydep"])
    # Unpinned now, but the lock keeps 1.0.0 until asked to upgrade.
    assert project.run("lock") == 0
    assert pins(project.read(), "one")["tinydep"] == "1.0.0"
    assert project.run("lock", "--upgrade-policy", "one") == 0
    lock = project.read()
    assert pins(lock, "one")["tinydep"] == "2.0.0"
    assert pins(lock, "two")["tinydep"] == "1.0.0"
    assert project.run("lock", "--upgrade-package", "TinyDep") == 0
    assert pins(project.read(), "two")["tinydep"] == "2.0.0"
    capsys.readouterr()
    assert project.run("lock", "--upgrade", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kept"] == [] and len(result["resolved"]) == 4  # installer, executor, one, two
    assert result["changed"] is False  # nothing newer exists: same bytes
    assert project.run("lock", "--upgrade-policy", "nope") == 2


def test_check_reports_a_readable_diff(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.policy("one", ["tinydep==1.0.0"])
    project.write_manifest(path_entry("one"))
    assert project.run("lock", "--check") == 1  # no lock yet
    assert project.run("lock") == 0
    capsys.readouterr()
    assert project.run("lock", "--check") == 0
    assert "up to date" in capsys.readouterr().out
    project.policy("one", ["tinydep==1.1.0"])
    assert project.run("lock", "--check") == 1
    err = capsys.readouterr().err
    assert "is out of date with the manifests (policy 'one')" in err
    assert '-  "tinydep==1.0.0",' in err and '+  "tinydep==1.1.0",' in err
    assert "--- " in err and "+++ " in err
    # --check never writes.
    assert pins(project.read(), "one")["tinydep"] == "1.0.0"
    assert project.run("lock") == 0
    assert project.run("lock", "--check") == 0


def test_unsatisfiable_requirements_are_bad_input_named_once(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.policy("needs-new", ["tinydep==2.0.0"])
    project.write_manifest(path_entry("needs-new", '  python: "3.10"\n'))
    from gateway_builder.cli import build_parser
    from gateway_builder.commands.lock import run
    from gateway_builder.ui import UI

    args = build_parser().parse_args(
        ["lock", "--python-build-file", str(project.manifest), "--cache-dir", str(project.cache)]
    )
    with pytest.raises(InputError) as info:
        run(args, UI(verbosity=-1))
    message = str(info.value)
    assert "policy 'needs-new'" in message and "Python 3.10" in message and "with uv" in message
    requirements_txt = project.root / "policies" / "needs-new" / "requirements.txt"
    assert f"({requirements_txt})" in message
    assert "tinydep" in message  # the reason itself, not only "no solution"
    capsys.readouterr()
    assert project.run("lock") == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    # Every line of the explanation is printed once.
    body = [
        line
        for line in err.splitlines()
        if line and not line.startswith(("==>", "resolv", "fetch"))
    ]
    assert len(body) == len(set(body)), err
    assert not any(line in errors[0] for line in body[1:]), err


def test_a_missing_git_repository_is_bad_input(project: Project, tmp_path: Path) -> None:
    missing = (tmp_path / "no-such-repo.git").as_uri()
    project.write_manifest(
        f"- name: gone\n  source:\n    git:\n      url: {missing}\n      ref: v1\n"
    )
    assert project.run("lock") == 2
    assert project.run("fetch") == 2


def test_platform_flag_adds_aarch64_and_sticks(project: Project) -> None:
    project.policy("plat", ["tinyplat"], python_version="3.12")
    project.write_manifest(path_entry("plat"))
    assert project.run("lock", "--platform", "aarch64") == 0
    lock = project.read()
    assert lock.platforms == ("aarch64", "x86_64")
    entry = lock.policy("plat")
    assert entry is not None
    arm = {p.name: p.files[0] for p in entry.env.packages["aarch64"]}
    x86 = {p.name: p.files[0] for p in entry.env.packages["x86_64"]}
    assert arm["tinyplat"].endswith("manylinux2014_aarch64.whl")
    assert x86["tinyplat"].endswith("manylinux2014_x86_64.whl") and "cp312" in x86["tinyplat"]
    assert project.run("lock", "--check") == 0  # aarch64 stays without the flag


def test_git_floating_ref_keeps_its_pin_until_upgraded(
    project: Project, git_repo_factory: Callable[[str], GitRepo], capsys: pytest.CaptureFixture[str]
) -> None:
    repo = git_repo_factory("remote")
    folder = write_policy(repo.path / "pol", "gitpol", requirements=["tinydep==1.0.0"])
    repo.commit("v1.0.0")
    repo.tag("v1.0.0")
    project.write_manifest(
        f"- name: gitpol\n  source:\n    git:\n      url: {repo.url}\n      ref: v1\n      subdirectory: pol\n"
    )
    assert project.run("lock") == 0
    first = project.read().policy("gitpol")
    assert first is not None and first.tag == "v1.0.0" and first.commit_time is not None
    write_policy(folder, "gitpol", version="v1.1.0", requirements=["tinydep==1.1.0"])
    repo.commit("v1.1.0")
    repo.tag("v1.1.0")
    assert project.run("lock") == 0
    assert project.read().policy("gitpol") == first  # pinned
    assert project.run("lock", "--check") == 0
    assert project.run("lock", "--upgrade-policy", "gitpol") == 0
    moved = project.read().policy("gitpol")
    assert moved is not None and moved.tag == "v1.1.0" and moved.version == "v1.1.0"
    assert pins(project.read(), "gitpol")["tinydep"] == "1.1.0"
    # Re-pointing an exact tag is reported by --check (and so by build --locked).
    project.write_manifest(
        f"- name: gitpol\n  source:\n    git:\n      url: {repo.url}\n      ref: v1.1.0\n      subdirectory: pol\n"
    )
    assert project.run("lock") == 0
    (folder / "extra.py").write_text("X = 1\n")
    repo.commit("sneaky")
    repo.tag("v1.1.0", force=True)
    capsys.readouterr()
    assert project.run("lock", "--check") == 1
    err = capsys.readouterr().err
    assert "tag v1.1.0" in err and "moved from" in err


def test_cli_input_errors_exit_2(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    project.policy("one", ["tinydep"])
    project.write_manifest(path_entry("one"))
    assert project.run("fetch", "--offline") == 0  # path sources need no network
    project.lock.write_text('format = "something-else"\n')
    assert project.run("lock", "--check") == 2
    assert "format" in capsys.readouterr().err
    project.lock.write_text(project.lock.read_text() + "garbage = [\n")
    assert project.run("lock", "--check") == 2
    # A plain `lock` replaces an unreadable lock (with a warning).
    assert project.run("lock") == 0
    assert "ignoring the unreadable lock file" in capsys.readouterr().err
    project.policy("one", ["tinydep"], python_version="2.7")
    assert project.run("fetch") == 2
    assert "python_version.txt says '2.7'" in capsys.readouterr().err


def _bases(versions: tuple[str, ...]) -> BaseImages:
    return BaseImages(
        engine_builder=None,
        pythons=tuple(PythonBase(v, f"python:{v}", f"/usr/local/bin/python{v}") for v in versions),
        runtime="runtime:test",
    )


def test_prepare_plan_locked_and_unlocked(project: Project, tmp_path: Path) -> None:
    project.policy("one", ["tinydep"], python_version="3.12")
    project.policy("two", ["tinydep==1.0.0"])
    project.write_manifest(
        path_entry("one") + path_entry("two", "  failure_mode: skip\n  params:\n    greeting: yo\n")
    )
    from gateway_builder.ui import UI

    ui = UI(verbosity=-1)
    session = SessionOptions(python_build_file=project.manifest, cache_dir=project.cache)
    render = RenderOptions(labels=(("org.example.team", "gw"),))

    def prepare_plan(*, locked: bool) -> BuildPlan:
        return Session.open(session).plan(LockOptions(resolve=not locked), render, _bases, ui)

    with pytest.raises(StaleLockError, match="no lock file"):
        prepare_plan(locked=True)
    plan = prepare_plan(locked=False)
    assert project.lock.is_file()
    assert [p.name for p in plan.python_policies] == ["one", "two"]
    one, two = plan.python_policies
    assert one.python_version == "3.12" and two.python_version == "3.11"
    assert plan.python_versions == ("3.11", "3.12")
    assert [b.version for b in plan.bases.pythons] == ["3.11", "3.12"]
    assert {r.name: r.version for r in one.requirements}["tinydep"] == "2.0.0"
    assert two.failure_mode == "skip" and two.params == {"greeting": "yo"}
    assert two.source_dir is not None and (two.source_dir / "policy.py").is_file()
    assert two.module == "two.policy" and two.package_dir_name == "two"
    assert two.source_label == "path:../policies/two"
    assert plan.labels == (("org.example.team", "gw"),)
    assert plan.source_date_epoch == defaults.DEFAULT_SOURCE_DATE_EPOCH
    assert plan.lock_digest == project.read().digest
    assert [r.name for r in plan.installer_requirements] == ["pip"]
    assert prepare_plan(locked=True) == plan
    project.policy("two", ["tinydep==1.1.0"])
    with pytest.raises(StaleLockError) as info:
        prepare_plan(locked=True)
    assert info.value.details and '+  "tinydep==1.1.0",' in info.value.details


def test_lock_from_index_source_records_artifact(project: Project, local_index: LocalIndex) -> None:
    project.write_manifest(
        f"""
        - name: index-policy
          source:
            pip:
              package: gwbtest-index-policy
              version: "~=1.0"
              index_url: {local_index.http_url}
        """
    )
    assert project.run("lock") == 0
    entry = project.read().policy("index-policy")
    assert entry is not None
    assert entry.kind == "packaged" and entry.module == "index_policy_pkg.policy"
    assert entry.artifact == "gwbtest_index_policy-1.1.0-py3-none-any.whl"
    assert entry.resolved == f"sha256:{entry.artifact_sha256}"
    assert entry.source_file == entry.artifact
    assert pins(project.read(), "index-policy")["tinydep"] == "1.1.0"  # Requires-Dist tinydep<2
    # Offline relock works from the cache alone.
    assert project.run("lock", "--offline", "--check") == 0


def test_cache_dir_env_and_default(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(defaults.CACHE_ENV, str(project.root / "env-cache"))
    assert Cache.open().root == (project.root / "env-cache").resolve()


def test_built_policy_wheels_are_identified_by_their_source(project: Project) -> None:
    from gwb_factories import write_packaged_policy

    write_packaged_policy(
        project.root / "policies" / "packed", "packed", requires=["tinydep==1.0.0"]
    )
    project.write_manifest(path_entry("packed"))
    # The test backend is this repository's code: built on the host (the sandbox needs Docker).
    assert project.run("lock", "--allow-host-builds") == 0
    entry = project.read().policy("packed")
    assert entry is not None
    assert entry.kind == "packaged" and entry.artifact == "gwbtest_packed-1.0.0-py3-none-any.whl"
    assert entry.artifact_sha256 is None  # a rebuild may differ in bytes; the source is the pin
    assert entry.resolved.startswith("sha256:") and entry.module == "packed_pkg.policy"
    assert pins(project.read(), "packed") == {"apip-sdk-core": "0.2.3", "tinydep": "1.0.0"}
    # A fresh cache rebuilds the wheel and the lock still matches.
    project.cache = project.root / "fresh-cache"
    assert project.run("lock", "--check", "--allow-host-builds") == 0


# --------------------------------------------------------------------------------------------
# A lock that cannot lie: hand edits, another manifest's lock
# --------------------------------------------------------------------------------------------

FAKE = "sha256:" + "0f" * 32


def _edit_tinydep(text: str, edit: str) -> str:
    """A hand edit of policy one's tinydep pin (or an added pin next to it)."""
    head, sep, rest = text.partition('name = "tinydep"\nversion = "1.0.0"\n')
    assert sep, text
    if edit == "hash":
        hash_line = rest.split("\n", 2)[1]  # files = [...] then hashes = [...]
        return head + sep + rest.replace(hash_line, f'hashes = ["{FAKE}"]', 1)
    if edit == "version":
        return head + sep.replace('"1.0.0"', '"1.1.0"') + rest
    assert edit == "added"
    added = (
        '\n[[policies.packages.x86_64]]\nname = "tinytop"\nversion = "1.0.0"\n'
        f'files = ["tinytop-1.0.0-py3-none-any.whl"]\nhashes = ["{FAKE}"]\n'
    )
    return text + added


@pytest.mark.parametrize("edit", ["hash", "version", "added"])
def test_check_catches_a_hand_edit_and_lock_repairs_it(
    project: Project, capsys: pytest.CaptureFixture[str], edit: str
) -> None:
    project.policy("one", ["tinydep==1.0.0"])
    project.write_manifest(path_entry("one"))
    assert project.run("lock") == 0
    good = project.lock.read_text()
    project.lock.write_text(_edit_tinydep(good, edit))
    capsys.readouterr()
    assert project.run("lock", "--check") == 1
    out, err = capsys.readouterr()
    assert "up to date" not in out
    assert "was edited by hand" in err and "policy 'one' (x86_64)" in err, err
    assert ("tinytop" if edit == "added" else "tinydep") in err
    # A plain lock says so and re-resolves the edited environment.
    assert project.run("lock") == 0
    assert "were edited by hand" in capsys.readouterr().err
    assert project.lock.read_text() == good
    assert project.run("lock", "--check") == 0


@pytest.mark.parametrize("edit", ["hash", "added"])
def test_check_resolves_again_when_the_digest_was_forged_too(
    project: Project, capsys: pytest.CaptureFixture[str], edit: str
) -> None:
    project.policy("one", ["tinydep==1.0.0"])
    project.write_manifest(path_entry("one"))
    assert project.run("lock") == 0
    text = _edit_tinydep(project.lock.read_text(), edit)
    forged = read_lock_text(text, project.lock)
    entry = forged.policy("one")
    assert entry is not None
    text = text.replace(entry.env.pins_digest or "?", entry.env.computed_pins_digest())
    project.lock.write_text(text)
    capsys.readouterr()
    assert project.run("lock", "--check") == 1
    err = capsys.readouterr().err
    assert "was edited or is inconsistent: policy 'one' (x86_64): " in err, err
    if edit == "hash":
        assert f"tinydep==1.0.0: the lock records tinydep-1.0.0-py3-none-any.whl {FAKE}" in err
    else:
        assert "tinytop==1.0.0 is pinned but nothing requires it" in err
    assert "--upgrade-policy one" in err
    # Rendering from it (no --locked) says what is wrong, not "only an sdist?".
    from gateway_builder.ui import UI

    session = Session.open(
        SessionOptions(python_build_file=project.manifest, cache_dir=project.cache)
    )
    with pytest.raises(BuildError) as info:
        plan = session.plan(LockOptions(), RenderOptions(), _bases, UI(verbosity=-1))
        session.render(plan, project.root / "context", UI(verbosity=-1))
    assert "sdist" not in info.value.message
    assert "the lock was edited or is inconsistent" in info.value.message


def read_lock_text(text: str, path: Path) -> Lock:
    from gateway_builder.lock.file import parse_lock

    return parse_lock(text, path)


def test_the_lock_is_named_after_its_manifest(project: Project) -> None:
    project.policy("one", ["tinydep==1.0.0"])
    project.policy("two", ["tinydep==1.1.0"])
    project.write_manifest(path_entry("one"))
    other = project.manifests / "other.yaml"
    other.write_text(project.manifest.read_text().replace("one", "two"))
    assert project.run("lock") == 0
    first = project.lock.read_bytes()
    assert main(["lock", "--python-build-file", str(other), "--cache-dir", str(project.cache)]) == 0
    other_lock = project.manifests / "other.lock"
    assert project.lock.read_bytes() == first  # python-build.lock untouched
    assert read_lock(other_lock).manifest == "other.yaml"
    assert project.read().manifest == "python-build.yaml"
    assert pins(read_lock(other_lock), "two")["tinydep"] == "1.1.0"


def test_a_lock_of_another_manifest_is_never_overwritten(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.policy("one", ["tinydep==1.0.0"])
    project.write_manifest(path_entry("one"))
    assert project.run("lock") == 0
    first = project.lock.read_bytes()
    other = project.manifests / "other.yaml"
    other.write_text(project.manifest.read_text())
    capsys.readouterr()
    for extra in ([], ["--check"]):
        argv = ["lock", "--python-build-file", str(other), "--lock-file", str(project.lock)]
        assert main([*argv, "--cache-dir", str(project.cache), *extra]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(errors) == 1, errors
        assert "is the lock of python-build.yaml, not of other.yaml: refusing" in errors[0]
    assert project.lock.read_bytes() == first


def test_lock_hints_at_newer_sources_and_outdated_lists_them(
    project: Project,
    git_repo_factory: Callable[[str], GitRepo],
    local_index: LocalIndex,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gwb_factories import make_wheel, policy_wheel, sdk_wheel

    repo = git_repo_factory("remote")
    folder = write_policy(repo.path / "pol", "gitpol", requirements=["tinydep==1.0.0"])
    repo.commit("v1.0.0")
    repo.tag("v1.0.0")
    # An index of its own: a new release must not change the other tests' shared index.
    index = LocalIndex(tmp_path / "own-index")
    dists = tmp_path / "dists"
    index.add(sdk_wheel(dists))
    index.add(make_wheel(dists, "tinydep", "1.0.0"))
    index.add(policy_wheel(dists, "idx", "gwbtest-idx", "1.0.0", requires=["tinydep<2"]))
    index.serve()
    try:
        project.write_manifest(
            f"- name: gitpol\n  source:\n    git:\n      url: {repo.url}\n      ref: v1\n"
            "      subdirectory: pol\n"
            f"- name: idx\n  source:\n    pip:\n      package: gwbtest-idx\n"
            f'      version: "~=1.0"\n      index_url: {index.http_url}\n'
        )
        assert project.run("lock") == 0
        assert "hint:" not in capsys.readouterr().err  # nothing newer yet
        write_policy(folder, "gitpol", version="v1.1.0", requirements=["tinydep==1.0.0"])
        repo.commit("v1.1.0")
        repo.tag("v1.1.0")
        index.add(policy_wheel(dists, "idx", "gwbtest-idx", "1.2.0", requires=["tinydep<2"]))
        index.add(policy_wheel(dists, "idx", "gwbtest-idx", "2.0.0", requires=["tinydep<2"]))
        assert project.run("lock") == 0
        captured = capsys.readouterr()
        assert "unchanged" in captured.out  # still pinned ...
        hints = [line for line in captured.err.splitlines() if line.startswith("hint: ")]
        assert hints == [  # ... but it says what an upgrade brings (2.0.0 is outside ~=1.0)
            "hint: policy 'gitpol': tag v1.1.0 is available (locked: v1.0.0); "
            "run `gateway-builder lock --upgrade-policy gitpol`",
            "hint: policy 'idx': release gwbtest-idx==1.2.0 is available (locked: "
            "gwbtest-idx==1.0.0); run `gateway-builder lock --upgrade-policy idx`",
        ]
        before = project.lock.read_bytes()
        assert project.run("lock", "--outdated", "--json") == 0
        listed = json.loads(capsys.readouterr().out)["outdated"]
        assert listed == [
            {"name": "gitpol", "kind": "tag", "locked": "v1.0.0", "newest": "v1.1.0"},
            {
                "name": "idx",
                "kind": "release",
                "locked": "gwbtest-idx==1.0.0",
                "newest": "gwbtest-idx==1.2.0",
            },
        ]
        assert project.lock.read_bytes() == before  # --outdated writes nothing
        assert project.run("lock", "--upgrade-policy", "gitpol", "--upgrade-policy", "idx") == 0
        capsys.readouterr()
        assert project.run("lock", "--outdated") == 0
        assert "0 policies with a newer source" in capsys.readouterr().out
    finally:
        index.stop()


def evil_sdist(dest: Path, name: str, marker: Path) -> Path:
    """An sdist whose build backend writes ``marker`` as soon as anything imports it."""
    base = f"{name.replace('-', '_')}-1.0.0"
    folder = dest / base
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        f'[project]\nname = "{name}"\nversion = "1.0.0"\n'
    )
    (folder / "backend.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('build code ran')\n"
        "def get_requires_for_build_wheel(config_settings=None):\n    return []\n"
    )
    (folder / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")
    archive = dest / f"{base}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=base)
    return archive


@pytest.mark.parametrize("resolver", ["uv", pytest.param("pip-tools", marks=pytest.mark.network)])
def test_lock_refuses_an_sdist_only_dependency_without_running_it(
    project: Project,
    local_index: LocalIndex,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    resolver: str,
) -> None:
    name = f"gwbtest-evil-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "build-code-ran"
    local_index.add(evil_sdist(tmp_path / "dist", name, marker))
    project.policy("needs-sdist", ["tinydep", name])
    project.write_manifest(path_entry("needs-sdist"))
    capsys.readouterr()
    assert project.run("lock", "--resolver", resolver) == 2
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert name in line and "needs-sdist" in line and "sdist" in line, line
    assert not marker.exists(), "the dependency's build code ran on the host"
    assert not project.lock.exists()
