"""Git policy sources: resolve a ref to a commit, keep a bare mirror in the cache, extract a tree.

Refs: a tag, a branch, a commit (7-40 hex digits), ``HEAD``, or a version prefix resolved like the
upstream builder: ``v1`` / ``v1.2`` (also ``<subdir>/v1``) become the highest ``vX.Y.Z`` tag with
that prefix, integer parts only (pre-releases such as ``v1.2.1-rc1`` never match).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import git

from gateway_builder.cache import Cache
from gateway_builder.errors import BuildError, InputError
from gateway_builder.fetch.tree import check_tree, content_hash, extract_tar, safe_relpath
from gateway_builder.manifest.giturl import ALLOWED_SCHEMES, SCP_RE, git_url_problem
from gateway_builder.redact import redact_text, redact_url
from gateway_builder.toolenv import first_line, isolated_env

_EXACT_RE = re.compile(r"^(?P<prefix>(?:.*/)?)v(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)$")
_MINOR_RE = re.compile(r"^(?P<prefix>(?:.*/)?)v(?P<major>\d+)\.(?P<minor>\d+)$")
_MAJOR_RE = re.compile(r"^(?P<prefix>(?:.*/)?)v(?P<major>\d+)$")
_HEX_RE = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass(frozen=True)
class GitCheckout:
    """A policy tree extracted from one commit."""

    root: Path  # the policy directory (the subdirectory, if any) in the cache
    commit: str  # full SHA
    tag: str | None  # the exact tag the ref resolved to (version prefixes, tags)
    ref_kind: str  # "tag" | "version" | "branch" | "commit" | "head"
    commit_time: int  # committer time, seconds since the epoch
    moved_from: str | None = None  # a tag that pointed at another commit in the lock


def classify_ref(ref: str) -> str:
    """``exact`` (ends in vX.Y.Z), ``minor`` (vX.Y), ``major`` (vX) or ``none``."""
    if _EXACT_RE.match(ref):
        return "exact"
    if _MINOR_RE.match(ref):
        return "minor"
    if _MAJOR_RE.match(ref):
        return "major"
    return "none"


def pick_version_tag(ref: str, tags: list[str]) -> str | None:
    """The highest ``vX.Y.Z`` tag matching a ``v1`` / ``v1.2`` / ``<dir>/v1`` ref, or None."""
    kind = classify_ref(ref)
    if kind == "major":
        m = _MAJOR_RE.match(ref)
        assert m
        pattern = re.compile(rf"^{re.escape(ref)}\.(\d+)\.(\d+)$")
    elif kind == "minor":
        pattern = re.compile(rf"^{re.escape(ref)}\.()(\d+)$")
    else:
        return None
    best: tuple[int, int] | None = None
    chosen = None
    for tag in tags:
        m = pattern.match(tag)
        if not m:
            continue
        key = (int(m.group(1) or 0), int(m.group(2)))
        if best is None or key > best:
            best, chosen = key, tag
    return chosen


def normalize_url(url: str, base_dir: Path, what: str = "") -> str:
    """Check the URL's transport (the manifest's rule); turn a local path into an absolute path."""
    problem = git_url_problem(url)
    if problem:
        prefix = f"{what}: " if what else ""
        raise InputError(f"{prefix}{redact_url(url)!r}: {problem}")
    if url.startswith(ALLOWED_SCHEMES):
        return url.removeprefix("git+") if url.startswith("git+ssh://") else url
    if SCP_RE.match(url):
        return url
    path = Path(url).expanduser()
    if not path.is_absolute():
        path = (base_dir / path).resolve()
    return str(path)


def _env() -> dict[str, str]:
    return isolated_env({"GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh"})


#: A credential helper that answers ``get`` from the environment. ``printf`` is a shell builtin,
#: so no process ever has the password in its arguments.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; '
    'printf \'username=%s\\npassword=%s\\n\' "$GWB_GIT_USERNAME" "$GWB_GIT_PASSWORD"; }; f'
)


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """An http(s) URL without its userinfo, and the environment that gives git the credentials.

    The userinfo would otherwise be on the command line of ``git ls-remote``, ``git fetch`` and
    ``git-remote-http`` (readable by every user in ``/proc/*/cmdline``). The environment
    configures one credential helper (``GIT_CONFIG_COUNT``, nothing on the command line; the empty
    first entry drops any helper of this machine, so nothing stores the password) that reads the
    user name and password from two variables.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, {}
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    bare = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return bare, {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "credential.helper",
        "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": "credential.helper",
        "GIT_CONFIG_VALUE_1": _CREDENTIAL_HELPER,
        "GWB_GIT_USERNAME": unquote(user),
        "GWB_GIT_PASSWORD": unquote(password),
    }


#: git's words for a repository that is not there (or not readable with these credentials):
#: bad input (exit 2) like a missing ref, not a failure of the machine (a refused connection).
_MISSING_REPO = re.compile(
    r"does not appear to be a git repository|repository .*not found|not found: repository|"
    r"returned error: 40[134]|authentication failed|could not read (username|password)",
    re.IGNORECASE,
)


def _error(what: str, exc: git.GitCommandError) -> BuildError | InputError:
    stderr = redact_text(str(exc.stderr or "")).strip().removeprefix("stderr:").strip(" '")
    kind = InputError if _MISSING_REPO.search(stderr) else BuildError
    return kind(f"{what}: {first_line(stderr) or 'git failed'}", details=stderr or None)


class GitRemote:
    """One repository URL with its bare mirror in the cache."""

    def __init__(self, url: str, cache: Cache, what: str) -> None:
        self.url, credentials = split_credentials(url)
        self.display = redact_url(url)
        self.cache = cache
        self.what = what
        self.path = cache.git_mirror(url)
        if not (self.path / "HEAD").exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.path.parent))
            git.Repo.init(tmp, bare=True)
            try:
                tmp.rename(self.path)
            except OSError:
                if not (self.path / "HEAD").exists():
                    raise
        self.repo = git.Repo(self.path)
        self.git = self.repo.git
        self.git.update_environment(**_env(), **credentials)

    # -- refs -----------------------------------------------------------------------------------

    def remote_refs(self) -> dict[str, str]:
        """``git ls-remote``: ref name -> commit (annotated tags peeled)."""
        try:
            out = self.git.ls_remote(self.url)
        except git.GitCommandError as exc:
            raise _error(f"{self.what}: cannot read {self.display}", exc) from None
        return _parse_refs(str(out))

    def local_refs(self) -> dict[str, str]:
        """Refs of the mirror (what the last online fetch saw)."""
        try:
            out = self.git.show_ref("--dereference")
        except git.GitCommandError:
            return {}
        refs: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, name = line.partition(" ")
            refs[name] = sha
        head = self._mirror_head()
        if head:
            refs["HEAD"] = head
        return _peel(refs)

    def _mirror_head(self) -> str | None:
        try:
            return str(self.git.rev_parse("--verify", "--quiet", "refs/remote-head^{commit}"))
        except git.GitCommandError:
            return None

    def has_commit(self, sha: str) -> bool:
        """Whether the mirror holds commit ``sha``."""
        try:
            self.git.cat_file("-e", f"{sha}^{{commit}}")
            return True
        except git.GitCommandError:
            return False

    def fetch(self, refspecs: list[str]) -> None:
        """Fetch refspecs from the remote into the mirror."""
        if self.cache.offline:
            raise InputError(f"{self.what}: {self.display} is not in the cache (--offline)")
        try:
            self.git.fetch("--quiet", "--no-tags", self.url, *refspecs)
        except git.GitCommandError as exc:
            raise _error(f"{self.what}: cannot fetch from {self.display}", exc) from None

    def fetch_all(self) -> None:
        """Fetch every branch and tag (and the remote HEAD)."""
        self.fetch(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
        with contextlib.suppress(git.GitCommandError):
            self.git.fetch("--quiet", "--no-tags", self.url, "+HEAD:refs/remote-head")

    def commit_time(self, sha: str) -> int:
        """Committer time of ``sha``."""
        return int(self.git.show("-s", "--format=%ct", sha).strip())

    def rev_parse(self, rev: str) -> str | None:
        """Full SHA of a commit-ish in the mirror, or None."""
        try:
            return str(self.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")).strip()
        except git.GitCommandError:
            return None


def _parse_refs(out: str) -> dict[str, str]:
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if sha and name:
            refs[name.strip()] = sha.strip()
    return _peel(refs)


def _peel(refs: dict[str, str]) -> dict[str, str]:
    out = {k: v for k, v in refs.items() if not k.endswith("^{}")}
    for k, v in refs.items():
        if k.endswith("^{}"):
            out[k[:-3]] = v
    return out


@dataclass(frozen=True)
class _Target:
    commit: str | None  # None: a short SHA to look up in the mirror
    tag: str | None
    kind: str
    fetch_ref: str | None  # remote ref name to fetch


def _resolve(ref: str, refs: dict[str, str], display: str, what: str) -> _Target:
    tags = {k[len("refs/tags/") :]: v for k, v in refs.items() if k.startswith("refs/tags/")}
    heads = {k[len("refs/heads/") :]: v for k, v in refs.items() if k.startswith("refs/heads/")}
    if ref == "HEAD":
        if "HEAD" not in refs:
            raise InputError(f"{what}: {display} has no HEAD")
        return _Target(refs["HEAD"], None, "head", "HEAD")
    if classify_ref(ref) in ("major", "minor"):
        tag = pick_version_tag(ref, sorted(tags))
        if tag is None:
            raise InputError(f'{what}: no tags found matching "{ref}" in {display}')
        return _Target(tags[tag], tag, "version", f"refs/tags/{tag}")
    if ref in tags:
        return _Target(tags[ref], ref, "tag", f"refs/tags/{ref}")
    if ref in heads:
        return _Target(heads[ref], None, "branch", f"refs/heads/{ref}")
    if ref.startswith("refs/") and ref in refs:
        return _Target(refs[ref], None, "branch", ref)
    if _HEX_RE.match(ref):
        return _Target(ref if len(ref) == 40 else None, None, "commit", None)
    raise InputError(f"{what}: ref '{ref}' not found in {display} (no such tag, branch or commit)")


def fetch_git(
    url: str,
    ref: str,
    subdirectory: str | None,
    cache: Cache,
    *,
    what: str,
    base_dir: Path,
    pin: str | None = None,
    pin_tag: str | None = None,
) -> GitCheckout:
    """Resolve ``ref`` in ``url`` and extract the policy tree of that commit into the cache.

    ``pin`` is the commit the lock recorded (``pin_tag`` the tag a version prefix resolved to):
    floating refs (branches, ``HEAD``, ``v1``) stay on it; a tag that now points at another
    commit is used and reported through ``GitCheckout.moved_from``.
    """
    url = normalize_url(url, base_dir, what)
    remote = GitRemote(url, cache, what)
    moved_from = None
    floating = ref == "HEAD" or classify_ref(ref) in ("major", "minor")
    if pin and (ref == pin or (_HEX_RE.match(ref) and pin.startswith(ref))):
        target = _Target(pin, None, "commit", None)
    elif pin and floating and remote.has_commit(pin):
        # A floating ref stays on the locked commit: no network needed.
        kind = "head" if ref == "HEAD" else "version"
        target = _Target(pin, pin_tag, kind, None)
    else:
        refs = remote.local_refs() if cache.offline else remote.remote_refs()
        target = _resolve(ref, refs, remote.display, what)
        if pin and target.kind == "tag":
            if target.commit != pin:
                if cache.offline:
                    target = _Target(pin, target.tag, "tag", None)
                else:
                    moved_from = pin
        elif pin and target.kind in ("branch", "head", "version"):
            tag = pin_tag if target.kind == "version" else None
            target = _Target(pin, tag, target.kind, None)
    commit = target.commit
    if commit is None or not remote.has_commit(commit):
        if cache.offline:
            raise InputError(
                f"{what}: {remote.display}@{ref} is not in the cache (--offline); fetch it online first"
            )
        if target.fetch_ref and commit is not None:
            local = target.fetch_ref if target.fetch_ref.startswith("refs/") else "refs/remote-head"
            remote.fetch([f"+{target.fetch_ref}:{local}"])
        if commit is None or not remote.has_commit(commit):
            remote.fetch_all()
        if commit is None:
            commit = remote.rev_parse(ref)
            if commit is None:
                raise InputError(
                    f"{what}: ref '{ref}' not found in {remote.display} (no such tag, branch or commit)"
                )
        if not remote.has_commit(commit):
            with contextlib.suppress(BuildError):
                remote.fetch([commit])
        if not remote.has_commit(commit):
            raise InputError(f"{what}: commit {commit} not found in {remote.display}")
    root = _extract(remote, commit, subdirectory, what, ref)
    return GitCheckout(
        root=root,
        commit=commit,
        tag=target.tag,
        ref_kind=target.kind,
        commit_time=remote.commit_time(commit),
        moved_from=moved_from,
    )


def _check_subdirectory(
    remote: GitRemote, commit: str, subdirectory: str, what: str, ref: str
) -> str:
    if not subdirectory:
        return ""
    rel = safe_relpath(subdirectory, f"{what}: subdirectory")
    if str(rel) == ".":
        return ""
    prefix = ""
    for part in rel.parts:
        prefix = f"{prefix}/{part}" if prefix else part
        listing = remote.git.ls_tree(commit, "--", prefix).strip()
        if not listing:
            raise InputError(
                f"{what}: subdirectory '{subdirectory}' not found in {remote.display}@{ref} "
                f"({commit[:12]})"
            )
        mode, kind = listing.split()[0:2]
        if mode == "120000":
            raise InputError(
                f"{what}: subdirectory '{subdirectory}' is a symlink ({prefix}); refusing it"
            )
        if kind != "tree":
            raise InputError(f"{what}: subdirectory '{subdirectory}' is not a directory")
    return str(rel)


def _extract(remote: GitRemote, commit: str, subdirectory: str | None, what: str, ref: str) -> Path:
    sub = _check_subdirectory(remote, commit, subdirectory or "", what, ref)
    key = f"{commit}-{re.sub(r'[^A-Za-z0-9._-]', '_', sub) or '_root'}"

    def fill(dest: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="gwb-archive-") as tmp:
            tar = Path(tmp) / "tree.tar"
            args = ["--format=tar", commit]
            if sub:
                args += ["--", sub]
            try:
                with tar.open("wb") as fh:
                    remote.git.archive(*args, output_stream=fh)
            except git.GitCommandError as exc:
                raise _error(f"{what}: cannot read {commit[:12]}", exc) from None
            extract_tar(tar, dest, what, strip=sub)
        check_tree(dest, what)

    return remote.cache.put_tree("git", key, fill, digest=content_hash)
