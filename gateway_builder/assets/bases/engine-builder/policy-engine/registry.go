package main

// policyInfo describes one policy compiled into the engine.
type policyInfo struct {
	Name    string
	Version string
	Runtime string // "go" or "python"
	Source  string // human-readable provenance, e.g. "gomodule example.com/p@v1"
}

// compiledPolicies is filled by the file the builder generates (zz_policies.go).
var compiledPolicies []policyInfo
