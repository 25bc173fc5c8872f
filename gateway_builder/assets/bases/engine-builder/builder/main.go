// Command gateway-builder is gateway-builder's stand-in for the upstream engine builder.
//
// It honours the upstream command line (-build-file, -out-dir and the other upstream flags,
// which it accepts and ignores), reads the build file, registers each policy (Go entries by
// name and source; Python entries through the Python bridge) and compiles the stand-in policy
// engine with that list embedded to <out-dir>/gateway-runtime/policy-engine, the upstream output
// layout. It needs no network: the engine uses the Go standard library only.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// BuilderVersion identifies this stand-in in build-info.json and in the engine's log.
const BuilderVersion = "gateway-builder-standin-1"

const defaultEngineSource = "/usr/local/src/gateway-builder/policy-engine"

type options struct {
	buildFile  string
	systemLock string
	engineSrc  string
	outDir     string
	logFormat  string
	logLevel   string
	ignored    []string
}

var logJSON bool

func logf(level, format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	if logJSON {
		line, _ := json.Marshal(map[string]string{"level": level, "msg": msg, "component": "gateway-builder-standin"})
		fmt.Fprintln(os.Stderr, string(line))
		return
	}
	fmt.Fprintf(os.Stderr, "[gateway-builder stand-in] %s %s\n", level, msg)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: gateway-builder -build-file FILE -out-dir DIR [upstream flags]

Stand-in for the upstream gateway builder: compiles a policy engine that registers the
policies of FILE into DIR/gateway-runtime/policy-engine.

  -build-file FILE          build file (upstream build.yaml schema; default build.yaml)
  -out-dir DIR              output directory (default output)
  -system-build-lock FILE   extra build file whose policies are added (optional)
  -policy-engine-src DIR    engine source (default `+defaultEngineSource+`)
  -log-format text|json     log format (default text)
  -log-level LEVEL          accepted, ignored
  -gateway-runtime-base-image, -gateway-controller-base-image  accepted, ignored
`)
}

func parseOptions(args []string) (*options, error) {
	o := &options{buildFile: "build.yaml", outDir: "output", engineSrc: defaultEngineSource, logFormat: "text"}
	targets := map[string]*string{
		"build-file":        &o.buildFile,
		"system-build-lock": &o.systemLock,
		"policy-engine-src": &o.engineSrc,
		"out-dir":           &o.outDir,
		"log-format":        &o.logFormat,
		"log-level":         &o.logLevel,
	}
	acceptedIgnored := map[string]bool{
		"gateway-runtime-base-image":    true,
		"gateway-controller-base-image": true,
	}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			return nil, fmt.Errorf("unexpected argument %q", arg)
		}
		name := strings.TrimLeft(arg, "-")
		if name == "h" || name == "help" {
			return nil, nil
		}
		value, hasValue := "", false
		if eq := strings.IndexByte(name, '='); eq >= 0 {
			name, value, hasValue = name[:eq], name[eq+1:], true
		}
		if target, ok := targets[name]; ok {
			if !hasValue {
				if i+1 >= len(args) {
					return nil, fmt.Errorf("flag needs an argument: -%s", name)
				}
				i++
				value = args[i]
			}
			*target = value
			continue
		}
		if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			value = args[i+1]
			i++
		}
		if !acceptedIgnored[name] {
			logf("WARN", "unknown flag -%s ignored", name)
		}
		o.ignored = append(o.ignored, name)
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return nil, fmt.Errorf("-log-format must be text or json, got %q", o.logFormat)
	}
	return o, nil
}

// detectRuntime follows the upstream rule for filePath entries: go.mod wins, then any *.py at
// the top of the directory or a pyproject.toml means Python, otherwise Go.
func detectRuntime(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
		return "go"
	}
	if _, err := os.Stat(filepath.Join(dir, "pyproject.toml")); err == nil {
		return "python"
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "*.py")); len(matches) > 0 {
		return "python"
	}
	return "go"
}

type resolved struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Runtime string `json:"runtime"`
	Source  string `json:"source"`
}

func versionAfterAt(spec string) string {
	if at := strings.LastIndex(spec, "@"); at >= 0 && at+1 < len(spec) {
		return spec[at+1:]
	}
	return "unversioned"
}

func resolvePolicy(bf *BuildFile, p Policy) (resolved, error) {
	switch {
	case p.GoModule != "":
		return resolved{p.Name, versionAfterAt(p.GoModule), "go", "gomodule " + p.GoModule}, nil
	case p.PipPackage != "":
		version := "unresolved"
		if eq := strings.Index(p.PipPackage, "=="); eq >= 0 {
			version = "v" + strings.SplitN(p.PipPackage[eq+2:], "@", 2)[0]
		} else if strings.Contains(p.PipPackage, "@") {
			version = versionAfterAt(strings.SplitN(p.PipPackage, "#", 2)[0])
		}
		return resolved{p.Name, version, "python", "pipPackage " + redact(p.PipPackage)}, nil
	}
	dir := p.FilePath
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(filepath.Dir(bf.Path), dir)
	}
	info, err := os.Stat(dir)
	if err != nil || !info.IsDir() {
		return resolved{}, fmt.Errorf("%s:%d: policy %s: filePath %s is not a directory", bf.Path, p.Line, p.Name, p.FilePath)
	}
	defPath := filepath.Join(dir, "policy-definition.yaml")
	name, version, err := ReadDefinition(defPath)
	if err != nil {
		return resolved{}, fmt.Errorf("policy %s: policy-definition.yaml: %v", p.Name, err)
	}
	if name != p.Name {
		return resolved{}, fmt.Errorf("policy name mismatch: build file declares '%s' but policy-definition.yaml has '%s'", p.Name, name)
	}
	if version == "" {
		return resolved{}, fmt.Errorf("policy %s: %s has no version", p.Name, defPath)
	}
	return resolved{p.Name, version, detectRuntime(dir), "filePath " + p.FilePath}, nil
}

// redact hides credentials in URLs ("scheme://user:secret@host" keeps only the user).
func redact(spec string) string {
	scheme := strings.Index(spec, "://")
	if scheme < 0 {
		return spec
	}
	rest := spec[scheme+3:]
	at := strings.Index(rest, "@")
	slash := strings.Index(rest, "/")
	if at < 0 || (slash >= 0 && slash < at) {
		return spec
	}
	userinfo := rest[:at]
	if colon := strings.Index(userinfo, ":"); colon >= 0 {
		userinfo = userinfo[:colon] + ":****"
	} else if userinfo != "git" {
		userinfo = "****"
	}
	return spec[:scheme+3] + userinfo + rest[at:]
}

func generateRegistry(policies []resolved) string {
	var b strings.Builder
	b.WriteString("// Code generated by the gateway-builder stand-in builder. DO NOT EDIT.\n\npackage main\n\n")
	b.WriteString("func init() {\n\tcompiledPolicies = append(compiledPolicies,\n")
	for _, p := range policies {
		fmt.Fprintf(&b, "\t\tpolicyInfo{Name: %s, Version: %s, Runtime: %s, Source: %s},\n",
			strconv.Quote(p.Name), strconv.Quote(p.Version), strconv.Quote(p.Runtime), strconv.Quote(p.Source))
	}
	b.WriteString("\t)\n}\n")
	return b.String()
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !info.Mode().IsRegular() || strings.HasPrefix(info.Name(), "zz_") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

func compile(o *options, policies []resolved) (string, error) {
	work, err := os.MkdirTemp("", "policy-engine-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if err := copyTree(o.engineSrc, work); err != nil {
		return "", fmt.Errorf("copying engine source %s: %v", o.engineSrc, err)
	}
	if err := os.WriteFile(filepath.Join(work, "zz_policies.go"), []byte(generateRegistry(policies)), 0o644); err != nil {
		return "", err
	}
	outDir, err := filepath.Abs(filepath.Join(o.outDir, "gateway-runtime"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	binary := filepath.Join(outDir, "policy-engine")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.Version="+BuilderVersion, "-o", binary, ".")
	cmd.Dir = work
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOPROXY=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	if arch := os.Getenv("TARGETARCH"); arch != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+arch)
	}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build failed: %v", err)
	}
	return binary, nil
}

func writeBuildInfo(outDir string, policies []resolved) error {
	info := map[string]interface{}{"builderVersion": BuilderVersion, "standin": true, "policies": policies}
	if epoch := os.Getenv("SOURCE_DATE_EPOCH"); epoch != "" {
		info["sourceDateEpoch"] = epoch
	}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(outDir, "build-info.json"), append(data, '\n'), 0o644)
}

func run(args []string) int {
	o, err := parseOptions(args)
	if err != nil {
		logf("ERROR", "%v", err)
		usage(os.Stderr)
		return 2
	}
	if o == nil {
		usage(os.Stdout)
		return 0
	}
	logJSON = o.logFormat == "json"
	logf("INFO", "stand-in builder %s: build file %s, output %s", BuilderVersion, o.buildFile, o.outDir)
	files := []string{o.buildFile}
	if o.systemLock != "" {
		files = append(files, o.systemLock)
	}
	var policies []resolved
	seen := map[string]string{}
	for _, path := range files {
		bf, err := ReadBuildFile(path)
		if err != nil {
			logf("ERROR", "%v", err)
			return 1
		}
		for _, p := range bf.Policies {
			r, err := resolvePolicy(bf, p)
			if err != nil {
				logf("ERROR", "%v", err)
				return 1
			}
			key := r.Name + ":" + r.Version
			if other, dup := seen[key]; dup {
				logf("ERROR", "duplicate policy %s (from %s and %s)", key, other, path)
				return 1
			}
			seen[key] = path
			policies = append(policies, r)
		}
	}
	sort.SliceStable(policies, func(i, j int) bool { return policies[i].Name < policies[j].Name })
	for _, p := range policies {
		if p.Runtime == "python" {
			logf("INFO", "policy %s %s: python, registered through the Python bridge (%s)", p.Name, p.Version, p.Source)
		} else {
			logf("INFO", "policy %s %s: go, registered by name only; the stand-in compiles no Go policy code (%s)", p.Name, p.Version, p.Source)
		}
	}
	binary, err := compile(o, policies)
	if err != nil {
		logf("ERROR", "%v", err)
		return 1
	}
	if err := writeBuildInfo(o.outDir, policies); err != nil {
		logf("ERROR", "writing build-info.json: %v", err)
		return 1
	}
	logf("INFO", "compiled %s with %d policies", binary, len(policies))
	return 0
}

func main() {
	os.Exit(run(os.Args[1:]))
}
