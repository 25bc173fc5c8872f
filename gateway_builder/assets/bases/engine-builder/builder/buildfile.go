package main

// A reader for the small YAML subset that build files use: top-level "key: value" pairs, nested
// maps (skipped unless needed) and the "policies" block list of flat maps, with comments and
// quoted scalars. The standard library has no YAML parser and the stand-in may not download one.

import (
	"fmt"
	"os"
	"strings"
)

// Policy is one entry of a build file.
type Policy struct {
	Name       string
	FilePath   string
	GoModule   string
	PipPackage string
	Line       int
}

// BuildFile is the part of the upstream build.yaml schema the builder reads.
type BuildFile struct {
	Path     string
	Version  string
	Policies []Policy
}

// stripComment removes a trailing "# ..." comment that is outside quotes.
func stripComment(line string) string {
	inSingle, inDouble := false, false
	for i, r := range line {
		switch {
		case r == '\'' && !inDouble:
			inSingle = !inSingle
		case r == '"' && !inSingle:
			inDouble = !inDouble
		case r == '#' && !inSingle && !inDouble && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimRight(line[:i], " \t")
		}
	}
	return strings.TrimRight(line, " \t\r")
}

// scalar unquotes a plain, single-quoted or double-quoted YAML scalar.
func scalar(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if len(raw) >= 2 && raw[0] == '\'' && raw[len(raw)-1] == '\'' {
		return strings.ReplaceAll(raw[1:len(raw)-1], "''", "'"), nil
	}
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		var b strings.Builder
		body := raw[1 : len(raw)-1]
		for i := 0; i < len(body); i++ {
			if body[i] != '\\' || i+1 == len(body) {
				b.WriteByte(body[i])
				continue
			}
			i++
			switch body[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case '"', '\\', '/':
				b.WriteByte(body[i])
			default:
				return "", fmt.Errorf("unsupported escape \\%c", body[i])
			}
		}
		return b.String(), nil
	}
	if strings.HasPrefix(raw, "'") || strings.HasPrefix(raw, "\"") {
		return "", fmt.Errorf("unterminated quoted value %s", raw)
	}
	return raw, nil
}

// splitPair splits "key: value" (value may be empty).
func splitPair(text string) (string, string, bool) {
	idx := strings.Index(text, ":")
	for idx >= 0 && idx+1 < len(text) && text[idx+1] != ' ' && text[idx+1] != '\t' {
		next := strings.Index(text[idx+1:], ":")
		if next < 0 {
			return "", "", false
		}
		idx += next + 1
	}
	if idx < 0 {
		return "", "", false
	}
	key, err := scalar(text[:idx])
	if err != nil {
		return "", "", false
	}
	return key, strings.TrimSpace(text[idx+1:]), true
}

func indentOf(line string) int {
	return len(line) - len(strings.TrimLeft(line, " "))
}

// parseFlowMap reads "{a: b, c: d}" (no nesting, no commas inside values).
func parseFlowMap(text string, line int) (map[string]string, error) {
	inner := strings.TrimSpace(text[1 : len(text)-1])
	out := map[string]string{}
	if inner == "" {
		return out, nil
	}
	for _, part := range strings.Split(inner, ",") {
		key, value, ok := splitPair(strings.TrimSpace(part))
		if !ok {
			return nil, fmt.Errorf("line %d: expected key: value in %q", line, text)
		}
		v, err := scalar(value)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		out[key] = v
	}
	return out, nil
}

func setField(p *Policy, key, value string) {
	switch key {
	case "name":
		p.Name = value
	case "filePath":
		p.FilePath = value
	case "gomodule":
		p.GoModule = value
	case "pipPackage":
		p.PipPackage = value
	}
}

// ParseBuildFile parses build file text. Unknown keys are ignored (the upstream CLI adds some).
func ParseBuildFile(path string, text string) (*BuildFile, error) {
	bf := &BuildFile{Path: path}
	lines := strings.Split(strings.ReplaceAll(text, "\t", "    "), "\n")
	section := ""
	itemIndent := -1
	var current *Policy
	flush := func() {
		if current != nil {
			bf.Policies = append(bf.Policies, *current)
			current = nil
		}
	}
	for i, rawLine := range lines {
		lineNo := i + 1
		line := stripComment(rawLine)
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed == "---" {
			continue
		}
		indent := indentOf(line)
		if indent == 0 {
			flush()
			key, value, ok := splitPair(trimmed)
			if !ok {
				return nil, fmt.Errorf("%s:%d: expected 'key: value'", path, lineNo)
			}
			section = key
			itemIndent = -1
			switch key {
			case "version":
				v, err := scalar(value)
				if err != nil {
					return nil, fmt.Errorf("%s:%d: %v", path, lineNo, err)
				}
				bf.Version = v
			case "policies":
				if value != "" && value != "[]" {
					return nil, fmt.Errorf("%s:%d: policies must be a block list", path, lineNo)
				}
			}
			continue
		}
		if section != "policies" {
			continue // nested content of keys the builder does not read
		}
		if strings.HasPrefix(trimmed, "- ") || trimmed == "-" {
			if itemIndent >= 0 && indent != itemIndent {
				return nil, fmt.Errorf("%s:%d: inconsistent list indentation", path, lineNo)
			}
			itemIndent = indent
			flush()
			current = &Policy{Line: lineNo}
			rest := strings.TrimSpace(strings.TrimPrefix(trimmed, "-"))
			if rest == "" {
				continue
			}
			if strings.HasPrefix(rest, "{") && strings.HasSuffix(rest, "}") {
				fields, err := parseFlowMap(rest, lineNo)
				if err != nil {
					return nil, fmt.Errorf("%s:%v", path, err)
				}
				for k, v := range fields {
					setField(current, k, v)
				}
				continue
			}
			key, value, ok := splitPair(rest)
			if !ok {
				return nil, fmt.Errorf("%s:%d: expected 'key: value' after '-'", path, lineNo)
			}
			v, err := scalar(value)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, lineNo, err)
			}
			setField(current, key, v)
			continue
		}
		if current == nil || indent <= itemIndent {
			return nil, fmt.Errorf("%s:%d: expected a '- name: ...' list item", path, lineNo)
		}
		key, value, ok := splitPair(trimmed)
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected 'key: value'", path, lineNo)
		}
		v, err := scalar(value)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, lineNo, err)
		}
		setField(current, key, v)
	}
	flush()
	return bf, nil
}

// Validate applies the upstream build-file rules.
func (bf *BuildFile) Validate() error {
	if bf.Version == "" {
		return fmt.Errorf("%s: build file version is required", bf.Path)
	}
	if bf.Version != "v1" {
		return fmt.Errorf("%s: unsupported build file version: %s (supported: v1)", bf.Path, bf.Version)
	}
	if len(bf.Policies) == 0 {
		return fmt.Errorf("%s: build file must declare at least one policy", bf.Path)
	}
	seen := map[string]bool{}
	for i, p := range bf.Policies {
		if p.Name == "" {
			return fmt.Errorf("%s:%d: policy entry %d: name is required", bf.Path, p.Line, i)
		}
		sources := 0
		for _, s := range []string{p.FilePath, p.GoModule, p.PipPackage} {
			if s != "" {
				sources++
			}
		}
		if sources == 0 {
			return fmt.Errorf("%s:%d: policy entry %d (%s): either filePath, gomodule, or pipPackage must be provided",
				bf.Path, p.Line, i, p.Name)
		}
		if sources > 1 {
			return fmt.Errorf("%s:%d: policy entry %d (%s): only one of filePath, gomodule, or pipPackage may be provided",
				bf.Path, p.Line, i, p.Name)
		}
		key := p.Name + ":" + p.FilePath + p.GoModule + p.PipPackage
		if seen[key] {
			return fmt.Errorf("%s:%d: duplicate policy entry: %s", bf.Path, p.Line, key)
		}
		seen[key] = true
	}
	return nil
}

// ReadBuildFile reads, parses and validates a build file.
func ReadBuildFile(path string) (*BuildFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	bf, err := ParseBuildFile(path, string(data))
	if err != nil {
		return nil, err
	}
	return bf, bf.Validate()
}

// ReadDefinition returns the top-level name and version of a policy-definition.yaml.
func ReadDefinition(path string) (string, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	name, version := "", ""
	for _, raw := range strings.Split(string(data), "\n") {
		line := stripComment(raw)
		if line == "" || indentOf(line) != 0 {
			continue
		}
		key, value, ok := splitPair(strings.TrimSpace(line))
		if !ok {
			continue
		}
		v, err := scalar(value)
		if err != nil {
			return "", "", fmt.Errorf("%s: %v", path, err)
		}
		switch key {
		case "name":
			name = v
		case "version":
			version = v
		}
	}
	return name, version, nil
}
