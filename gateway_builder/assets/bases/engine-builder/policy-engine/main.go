// Command policy-engine is gateway-builder's stand-in for the upstream Go policy engine.
//
// It is what the local engine builder compiles when the upstream builder image cannot be
// pulled. It does not process traffic. It accepts the upstream command line, logs every policy
// compiled into it (Python ones go through the Python bridge, so it checks that the Python
// executor's socket accepts a connection), listens on the engine socket, answers GET /health
// on the admin port, and exits 0 on SIGTERM or SIGINT after removing its socket.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const (
	defaultEngineSocket   = "/var/run/api-platform/policy-engine.sock"
	defaultExecutorSocket = "/var/run/api-platform/python-executor.sock"
	defaultAdminPort      = "9002"
	defaultConnectTimeout = 10 * time.Second
)

// Version is set with -ldflags "-X main.Version=..." by the builder.
var Version = "dev"

func logf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stdout, "policy-engine (stand-in): "+format+"\n", args...)
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// parseArgs accepts "-name value", "-name=value" and "--name ..." forms. Flags it does not
// know are logged and ignored; a value is consumed when the next argument is not a flag.
func parseArgs(args []string) (map[string]string, []string) {
	known := map[string]bool{"config": true, "xds-server": true, "log-level": true}
	values := map[string]string{}
	var ignored []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") {
			ignored = append(ignored, arg)
			continue
		}
		name := strings.TrimLeft(arg, "-")
		value, hasValue := "", false
		if eq := strings.IndexByte(name, '='); eq >= 0 {
			name, value, hasValue = name[:eq], name[eq+1:], true
		} else if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			value, hasValue = args[i+1], true
			i++
		}
		if known[name] {
			values[name] = value
		} else if hasValue {
			ignored = append(ignored, arg+" "+value)
		} else {
			ignored = append(ignored, arg)
		}
	}
	return values, ignored
}

// dialExecutor connects to the Python executor (a Unix socket path, or HOST:PORT).
func dialExecutor(address string, timeout time.Duration) error {
	network := "unix"
	if !strings.HasPrefix(address, "/") && strings.Contains(address, ":") {
		network = "tcp"
	}
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout(network, address, time.Second)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// listenUnix removes a stale socket file (and refuses to remove anything else) and listens.
func listenUnix(path string) (net.Listener, error) {
	if info, err := os.Lstat(path); err == nil {
		if info.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
		logf("removed stale socket %s", path)
	}
	return net.Listen("unix", path)
}

func serveAdmin(port string, executor string, needExecutor bool) {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if needExecutor {
			if err := dialExecutor(executor, 0); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "{\"status\":\"unhealthy\",\"reason\":%q,\"standin\":true}\n",
					"python executor unreachable: "+err.Error())
				return
			}
		}
		fmt.Fprintf(w, "{\"status\":\"healthy\",\"policies\":%d,\"standin\":true}\n", len(compiledPolicies))
	})
	listener, err := net.Listen("tcp", ":"+port)
	if err != nil {
		logf("warning: admin port %s not available: %v", port, err)
		return
	}
	logf("admin endpoint GET /health on :%s", port)
	_ = http.Serve(listener, mux)
}

func run() int {
	values, ignored := parseArgs(os.Args[1:])
	logf("version %s; this binary is a gateway-builder stand-in, not the upstream engine", Version)
	if cfg, ok := values["config"]; ok {
		if _, err := os.Stat(cfg); err != nil {
			logf("config %s: not readable (%v); the stand-in does not need it", cfg, err)
		} else {
			logf("config %s", cfg)
		}
	}
	if xds, ok := values["xds-server"]; ok {
		logf("xds server %s (not contacted by the stand-in)", xds)
	}
	if len(ignored) > 0 {
		logf("ignored arguments: %s", strings.Join(ignored, " "))
	}

	executor := env("PYTHON_EXECUTOR_SOCKET", defaultExecutorSocket)
	pythonCount := 0
	for _, p := range compiledPolicies {
		if p.Runtime == "python" {
			pythonCount++
			logf("registered policy %s %s (python, through the Python bridge at %s; %s)",
				p.Name, p.Version, executor, p.Source)
		} else {
			logf("registered policy %s %s (go; %s)", p.Name, p.Version, p.Source)
		}
	}
	logf("%d policies registered (%d go, %d python)",
		len(compiledPolicies), len(compiledPolicies)-pythonCount, pythonCount)

	if pythonCount > 0 {
		timeout := defaultConnectTimeout
		if raw := os.Getenv("PYTHON_EXECUTOR_CONNECT_TIMEOUT"); raw != "" {
			parsed, err := time.ParseDuration(raw)
			if err != nil {
				logf("error: PYTHON_EXECUTOR_CONNECT_TIMEOUT=%q: %v", raw, err)
				return 2
			}
			timeout = parsed
		}
		if err := dialExecutor(executor, timeout); err != nil {
			logf("error: python executor at %s does not accept connections: %v", executor, err)
			return 1
		}
		logf("python executor reachable at %s", executor)
	}

	socket := env("POLICY_ENGINE_SOCKET", defaultEngineSocket)
	listener, err := listenUnix(socket)
	if err != nil {
		logf("error: cannot listen on %s: %v", socket, err)
		return 1
	}
	go serveAdmin(env("POLICY_ENGINE_ADMIN_PORT", defaultAdminPort), executor, pythonCount > 0)
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			// The stand-in speaks no ext_proc: it accepts and closes.
			_ = conn.Close()
		}
	}()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	logf("ready: listening on %s", socket)
	received := <-signals
	logf("received %s, shutting down", received)
	_ = listener.Close() // removes the socket file for Unix listeners
	_ = os.Remove(socket)
	logf("stopped")
	return 0
}

func main() {
	os.Exit(run())
}
