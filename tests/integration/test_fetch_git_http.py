"""Git sources over smart HTTP with basic auth: a real ``git http-backend`` on 127.0.0.1.

The token in the URL must reach the server and nothing else: not the output (text or --json),
not the lock file, not the fetch cache (file names, git config, FETCH_HEAD, packed-refs, ...).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from gwb_factories import GitRepo, LocalIndex, write_policy

from gateway_builder import defaults
from gateway_builder.cli import main
from gateway_builder.lock.file import read_lock

pytestmark = pytest.mark.integration

USER = "user"
SECRET = "s3cr3tTOKEN"
WRONG = "wr0ngPASSWORD"
BACKEND_TIMEOUT_S = 60


@dataclass
class GitHttpServer:
    """``git http-backend`` behind basic auth on 127.0.0.1; counts what it answered."""

    root: Path  # GIT_PROJECT_ROOT: holds repo.git
    port: int = 0
    unauthorized: int = 0
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Seconds each request waits before it is answered (keeps git's processes alive longer).
    delay: float = 0.0

    def url(self, password: str, user: str = USER) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}/repo.git"


def _handler(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest output clean

        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _cgi(self) -> None:
            body = self._body() if self.command == "POST" else b""
            if server.delay:
                time.sleep(server.delay)
            if self.headers.get("Authorization") != expected:
                with server.lock:
                    server.unauthorized += 1
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="gwb-test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": USER,
                "REMOTE_ADDR": "127.0.0.1",
            }
            for header in ("Content-Encoding", "Git-Protocol"):
                if header in self.headers:
                    env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
            proc = subprocess.run(
                ["git", "http-backend"],
                input=body,
                env=env,
                capture_output=True,
                timeout=BACKEND_TIMEOUT_S,
                check=False,
            )
            head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
            if not sep:
                head, _, payload = proc.stdout.partition(b"\n\n")
            status, headers = 200, []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            with server.lock:
                server.served += 1
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def http_repo(
    git_repo_factory: Callable[[str], GitRepo], tmp_path: Path
) -> Iterator[tuple[GitHttpServer, GitRepo]]:
    """A policy repo (tags v1.0.0, v1.2.0, v2.0.0) served read-only over smart HTTP."""
    work = git_repo_factory("work")
    folder = work.path / "policies" / "hello"
    for tag in ("v1.0.0", "v1.2.0", "v2.0.0"):
        write_policy(folder, "hello", version=tag, requirements=["tinydep==1.0.0"])
        work.commit(f"release {tag}")
        work.tag(tag, annotated=tag == "v1.2.0")
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(
        ["git", "clone", "--quiet", "--bare", str(work.path), str(served / "repo.git")],
        check=True,
        capture_output=True,
    )
    state = GitHttpServer(served)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, name="git-http", daemon=True)
    thread.start()
    try:
        yield state, work
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _manifest(folder: Path, url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "python-build.yaml"
    path.write_text(
        "version: v1\n"
        'defaults:\n  python: "3.11"\n'
        "policies:\n"
        "  - name: hello\n"
        "    source:\n"
        "      git:\n"
        f'        url: "{url}"\n'
        "        ref: v1\n"
        "        subdirectory: policies/hello\n"
    )
    return path


def _assert_no_secret_in_tree(root: Path, secret: str) -> int:
    """Fail if ``secret`` is in any file name or file's bytes under ``root``; return files read."""
    needle = secret.encode()
    checked = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            assert secret not in name, f"secret in a cache path: {dirpath}/{name}"
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            # Loose objects and packs are zlib-compressed: a URL could not show up there anyway,
            # but reading the raw bytes of every file costs nothing at this size.
            assert needle not in path.read_bytes(), f"secret in cache file {path}"
            checked += 1
    return checked


def test_http_basic_auth_fetch_and_lock_keep_the_token_secret(
    http_repo: tuple[GitHttpServer, GitRepo],
    local_index: LocalIndex,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, work = http_repo
    monkeypatch.setenv(defaults.INDEX_URL_ENV, local_index.http_url)
    manifest = _manifest(tmp_path / "project", server.url(SECRET))
    cache = tmp_path / "fetch-cache"
    lock_file = tmp_path / "out" / "python-build.lock"
    lock_file.parent.mkdir()
    common = ["--python-build-file", str(manifest), "--cache-dir", str(cache)]

    assert main(["fetch", *common]) == 0
    out = capsys.readouterr()
    assert server.served > 0, "the backend never answered an authenticated request"
    assert "hello" in out.out and "v1.2.0" in out.out

    assert main(["fetch", "--json", *common]) == 0
    json_out = capsys.readouterr()
    result = json.loads(json_out.out)
    (policy,) = result["policies"]
    v12 = work.git("rev-parse", "v1.2.0^{commit}")
    assert (policy["version"], policy["tag"], policy["resolved"]) == ("v1.2.0", "v1.2.0", v12)
    assert f"{USER}:****@127.0.0.1:{server.port}" in policy["source"]

    assert main(["lock", *common, "--lock-file", str(lock_file)]) == 0
    lock_out = capsys.readouterr()
    lock = read_lock(lock_file)
    entry = lock.policy("hello")
    assert entry is not None
    assert entry.tag == "v1.2.0" and entry.version == "v1.2.0"
    lock_text = lock_file.read_text()
    assert v12 in lock_text and len(v12) == 40
    assert not (manifest.parent / defaults.LOCK_FILE_NAME).exists()  # --lock-file was honoured

    for label, text in (
        ("fetch stdout/stderr", out.out + out.err),
        ("--json stdout/stderr", json_out.out + json_out.err),
        ("lock stdout/stderr", lock_out.out + lock_out.err),
        ("lock file", lock_text),
    ):
        assert SECRET not in text, f"secret in {label}"
    mirrors = list((cache / "git").glob("*.git"))
    assert mirrors, "no git mirror in the cache"
    for mirror in mirrors:
        assert (mirror / "config").is_file()
        assert "127.0.0.1" not in (mirror / "config").read_text()  # no remote URL stored
    assert _assert_no_secret_in_tree(cache, SECRET) > 0
    # The config files that would hold a stored URL were among those read.
    assert any((m / "FETCH_HEAD").is_file() for m in mirrors)


def test_wrong_credentials_are_rejected_with_a_redacted_one_line_error(
    http_repo: tuple[GitHttpServer, GitRepo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, _ = http_repo
    cache = tmp_path / "fetch-cache"
    for extra in ([], ["--json"]):
        manifest = _manifest(tmp_path / "project", server.url(WRONG))
        before = server.unauthorized
        code = main(
            ["fetch", *extra, "--python-build-file", str(manifest), "--cache-dir", str(cache)]
        )
        out = capsys.readouterr()
        assert code in (1, 2)
        assert server.unauthorized > before  # the server did answer 401
        assert server.served == 0
        text = out.out + out.err
        assert WRONG not in text and "Traceback" not in text
        # One error line (file:line:col, policy, redacted URL); git's own stderr may follow
        # as details, already anonymized by git.
        errors = [ln for ln in out.err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, out.err
        assert f"{manifest}:5:5: policy 'hello'" in errors[0]
        assert f"{USER}:****@127.0.0.1:{server.port}/repo.git" in errors[0]
        assert "Authentication failed" in errors[0]
        if extra:
            assert json.loads(out.out)["ok"] is False
    _assert_no_secret_in_tree(cache, WRONG)


class CmdlineSampler:
    """Reads every process's command line (``/proc/*/cmdline``) in a loop until stopped."""

    def __init__(self, needle: str, max_seconds: float = 300) -> None:
        self.needle = needle.encode()
        self.max_seconds = max_seconds
        self.leaks: list[str] = []
        self.git_processes: set[str] = set()
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cmdline-sampler", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                except OSError:
                    continue  # the process ended meanwhile
                argv = cmdline.replace(b"\0", b" ").decode(errors="replace")
                if b"git" in cmdline and b"127.0.0.1" in cmdline:
                    self.git_processes.add(argv.split(" ", 1)[0])
                if self.needle in cmdline:
                    self.leaks.append(argv)
            self.passes += 1

    def __enter__(self) -> CmdlineSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_the_token_never_appears_on_a_command_line(
    http_repo: tuple[GitHttpServer, GitRepo],
    local_index: LocalIndex,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, _ = http_repo
    server.delay = 0.3  # every git process outlives several sampling passes
    monkeypatch.setenv(defaults.INDEX_URL_ENV, local_index.http_url)
    manifest = _manifest(tmp_path / "project", server.url(SECRET))
    common = ["--python-build-file", str(manifest), "--cache-dir", str(tmp_path / "cache")]
    with CmdlineSampler(SECRET) as sampler:
        assert main(["fetch", *common]) == 0
        assert main(["lock", *common, "--lock-file", str(tmp_path / "x.lock")]) == 0
    capsys.readouterr()
    assert server.served > 0
    # The sampler saw git talking to the server (ls-remote, fetch, git-remote-http) ...
    assert sampler.git_processes, f"no git process seen in {sampler.passes} passes"
    # ... and never the token.
    assert not sampler.leaks, sampler.leaks[:3]
