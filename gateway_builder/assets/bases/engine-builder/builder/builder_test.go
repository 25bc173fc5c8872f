package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const sample = `# a build file
version: v1
gateway:
  version: 1.2.0   # ignored by the builder
policies:
  - name: header-guard
    gomodule: example.com/policies/header-guard@v1.2.0
  - name: "py-local"   # quoted
    filePath: ./py-local
  - {name: remote, pipPackage: 'remote-policy==1.4.0'}
  - name: vcs
    pipPackage: git+https://user:s3cret@git.example/org/repo.git@v2.0.0#subdirectory=vcs
`

func TestParseBuildFile(t *testing.T) {
	bf, err := ParseBuildFile("build.yaml", sample)
	if err != nil {
		t.Fatal(err)
	}
	if err := bf.Validate(); err != nil {
		t.Fatal(err)
	}
	if bf.Version != "v1" || len(bf.Policies) != 4 {
		t.Fatalf("got version %q, %d policies", bf.Version, len(bf.Policies))
	}
	want := []Policy{
		{Name: "header-guard", GoModule: "example.com/policies/header-guard@v1.2.0", Line: 6},
		{Name: "py-local", FilePath: "./py-local", Line: 8},
		{Name: "remote", PipPackage: "remote-policy==1.4.0", Line: 10},
		{Name: "vcs", PipPackage: "git+https://user:s3cret@git.example/org/repo.git@v2.0.0#subdirectory=vcs", Line: 11},
	}
	for i, p := range want {
		if bf.Policies[i] != p {
			t.Errorf("policy %d: got %+v, want %+v", i, bf.Policies[i], p)
		}
	}
}

func TestValidateErrors(t *testing.T) {
	cases := map[string]string{
		"policies:\n  - name: a\n    gomodule: x@v1\n":                                         "version is required",
		"version: v2\npolicies:\n  - name: a\n    gomodule: x@v1\n":                            "unsupported build file version: v2",
		"version: v1\npolicies: []\n":                                                          "at least one policy",
		"version: v1\npolicies:\n  - filePath: ./a\n":                                          "name is required",
		"version: v1\npolicies:\n  - name: a\n":                                                "either filePath, gomodule, or pipPackage",
		"version: v1\npolicies:\n  - name: a\n    gomodule: x\n    filePath: y\n":              "only one of",
		"version: v1\npolicies:\n  - name: a\n    gomodule: x\n  - name: a\n    gomodule: x\n": "duplicate policy entry",
	}
	for text, want := range cases {
		bf, err := ParseBuildFile("b.yaml", text)
		if err == nil {
			err = bf.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", text, err, want)
		}
	}
	if _, err := ParseBuildFile("b.yaml", "version: v1\npolicies:\n  name: a\n"); err == nil {
		t.Error("a map under policies must be rejected")
	}
}

func TestParseOptionsAcceptsUpstreamFlags(t *testing.T) {
	o, err := parseOptions([]string{"-build-file", "/w/build.yaml", "--out-dir=/w/out",
		"-system-build-lock", "/s.yaml", "-log-format", "json", "-log-level", "debug",
		"-gateway-runtime-base-image", "img:1", "-gateway-controller-base-image=img:2"})
	if err != nil {
		t.Fatal(err)
	}
	if o.buildFile != "/w/build.yaml" || o.outDir != "/w/out" || o.systemLock != "/s.yaml" || o.logFormat != "json" {
		t.Fatalf("unexpected options %+v", o)
	}
	if len(o.ignored) != 2 {
		t.Fatalf("ignored = %v", o.ignored)
	}
	if _, err := parseOptions([]string{"stray"}); err == nil {
		t.Error("a positional argument must be rejected")
	}
}

func TestRedact(t *testing.T) {
	got := redact("git+https://user:s3cret@git.example/org/repo.git@v2.0.0")
	if strings.Contains(got, "s3cret") || !strings.Contains(got, "user:****@git.example") {
		t.Fatalf("got %s", got)
	}
	if got := redact("git+https://TOKEN@git.example/r.git@v1"); strings.Contains(got, "TOKEN") {
		t.Fatalf("got %s", got)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBuildAndRunEngine compiles an engine from a build file and runs it against a fake
// executor socket: it must log its policies, listen on its socket and stop on SIGTERM.
func TestBuildAndRunEngine(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("go not on PATH")
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "build.yaml"), sample)
	writeFile(t, filepath.Join(dir, "py-local", "policy-definition.yaml"), "name: py-local\nversion: v0.3.1\n")
	writeFile(t, filepath.Join(dir, "py-local", "policy.py"), "def get_policy(m, p):\n    return None\n")
	src, _ := filepath.Abs("../policy-engine")
	out := filepath.Join(dir, "out")
	if code := run([]string{"-build-file", filepath.Join(dir, "build.yaml"), "-out-dir", out, "-policy-engine-src", src}); code != 0 {
		t.Fatalf("builder exit code %d", code)
	}
	var info struct {
		Policies []resolved `json:"policies"`
	}
	data, err := os.ReadFile(filepath.Join(out, "build-info.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &info); err != nil || len(info.Policies) != 4 {
		t.Fatalf("build-info: %v %s", err, data)
	}
	if strings.Contains(string(data), "s3cret") {
		t.Fatal("credential leaked into build-info.json")
	}

	executorSock := filepath.Join(dir, "py.sock")
	executor, err := net.Listen("unix", executorSock)
	if err != nil {
		t.Fatal(err)
	}
	defer executor.Close()
	go func() {
		for {
			c, err := executor.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	engineSock := filepath.Join(dir, "pe.sock")
	writeFile(t, engineSock, "") // not a socket: the engine must refuse to remove it
	cmd := exec.Command(filepath.Join(out, "gateway-runtime", "policy-engine"), "-config", "/nonexistent.toml", "--xds-server", "x:18001", "--extra", "v")
	cmd.Env = append(os.Environ(), "PYTHON_EXECUTOR_SOCKET="+executorSock, "POLICY_ENGINE_SOCKET="+engineSock, "POLICY_ENGINE_ADMIN_PORT=0")
	if output, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(output), "is not a socket") {
		t.Fatalf("expected refusal, got %v: %s", err, output)
	}
	os.Remove(engineSock)

	cmd = exec.Command(filepath.Join(out, "gateway-runtime", "policy-engine"), "-config", "/nonexistent.toml")
	cmd.Env = append(os.Environ(), "PYTHON_EXECUTOR_SOCKET="+executorSock, "POLICY_ENGINE_SOCKET="+engineSock, "POLICY_ENGINE_ADMIN_PORT=0")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	scanner := bufio.NewScanner(stdout)
	deadline := time.Now().Add(20 * time.Second)
	for scanner.Scan() && time.Now().Before(deadline) {
		lines = append(lines, scanner.Text())
		if strings.Contains(scanner.Text(), "ready: listening on") {
			break
		}
	}
	log := strings.Join(lines, "\n")
	for _, want := range []string{"registered policy py-local v0.3.1 (python, through the Python bridge",
		"registered policy header-guard v1.2.0 (go", "python executor reachable", "ready: listening on " + engineSock} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if _, err := net.Dial("unix", engineSock); err != nil {
		t.Errorf("engine socket: %v", err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("engine exit: %v", err)
	}
	if _, err := os.Stat(engineSock); !os.IsNotExist(err) {
		t.Error("engine socket left behind")
	}
}
