package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A command's configuration file is a YAML mapping whose keys are the
// command's flag names, without dashes in front:
//
//	id: store-042
//	listen: 0.0.0.0:8443
//	labels: {tier: store, country: fr}   # k=v,k=v
//	join: [central-0.example:7946, central-1.example:7946]
//	nats-password-file: nats.password    # relative to this file
//
// Precedence is defaults < file < flags: a flag given on the command line
// wins over the file. Scalars are taken as the flag would take them;
// sequences are joined with commas and mappings written as k=v pairs, for
// the flags that take such lists. Relative paths in path-valued keys are
// resolved against the file's directory, so a file and the credentials
// beside it can move together. Unknown keys, duplicates, nulls and nested
// values are errors that name the file and line.

// maxConfigFileBytes bounds a configuration file.
const maxConfigFileBytes = 1 << 20

// configOnlyFlags are flags that make no sense inside a configuration file.
var configOnlyFlags = []string{"config", "check-config"}

// applyConfigFile reads the YAML configuration file at path and sets each
// flag it names that was not set on the command line.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs // relative paths inside resolve against the file's directory
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFileBytes+1))
	f.Close()
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(b) > maxConfigFileBytes {
		return fmt.Errorf("config file %s: larger than %d bytes", path, maxConfigFileBytes)
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	values, err := parseConfigFile(fs, path, b)
	if err != nil {
		return err
	}
	for _, v := range values {
		if explicit[v.name] {
			continue
		}
		if err := fs.Set(v.name, v.value); err != nil {
			return fmt.Errorf("%s:%d: %s: invalid value %q: %v", path, v.line, v.name, v.value, err)
		}
	}
	return nil
}

// configValue is one key of a configuration file, as a flag value.
type configValue struct {
	name, value string
	line        int
}

// parseConfigFile decodes a configuration file into flag values, checking
// every key against fs.
func parseConfigFile(fs *flag.FlagSet, path string, b []byte) ([]configValue, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // an empty file sets nothing
		}
		return nil, fmt.Errorf("config file %s: %v", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%s:%d: more than one YAML document; want one mapping", path, extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: %v", path, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want a mapping of flag names to values", path, root.Line)
	}
	dir := filepath.Dir(path)
	seen := map[string]int{}
	var out []configValue
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s:%d: keys must be flag names", path, k.Line)
		}
		name := k.Value
		if line, dup := seen[name]; dup {
			return nil, fmt.Errorf("%s:%d: %q is already set on line %d", path, k.Line, name, line)
		}
		seen[name] = k.Line
		if slices.Contains(configOnlyFlags, name) {
			return nil, fmt.Errorf("%s:%d: %q can only be given on the command line", path, k.Line, name)
		}
		if fs.Lookup(name) == nil {
			msg := fmt.Sprintf("%s:%d: unknown key %q", path, k.Line, name)
			if s := closestFlag(fs, name); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return nil, errors.New(msg + "; keys are the command's flag names")
		}
		val, err := configScalar(v)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %v", path, v.Line, name, err)
		}
		if isPathFlag(name) && val != "" && !filepath.IsAbs(val) {
			val = filepath.Join(dir, val)
		}
		out = append(out, configValue{name: name, value: val, line: v.Line})
	}
	return out, nil
}

// configScalar turns a YAML value into a flag value.
func configScalar(v *yaml.Node) (string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return "", errors.New("no value (write \"\" for an empty one)")
		}
		return v.Value, nil
	case yaml.SequenceNode:
		parts := make([]string, 0, len(v.Content))
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode || e.Tag == "!!null" {
				return "", errors.New("a list may only hold plain values")
			}
			if strings.Contains(e.Value, ",") {
				return "", fmt.Errorf("list element %q contains a comma", e.Value)
			}
			parts = append(parts, e.Value)
		}
		return strings.Join(parts, ","), nil
	case yaml.MappingNode:
		parts := make([]string, 0, len(v.Content)/2)
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, e := v.Content[i], v.Content[i+1]
			if k.Kind != yaml.ScalarNode || e.Kind != yaml.ScalarNode || e.Tag == "!!null" {
				return "", errors.New("a mapping may only hold plain keys and values")
			}
			if strings.ContainsAny(k.Value, ",=") || strings.Contains(e.Value, ",") {
				return "", fmt.Errorf("%s: %q: keys may not contain ',' or '=', values not ','", k.Value, e.Value)
			}
			parts = append(parts, k.Value+"="+e.Value)
		}
		return strings.Join(parts, ","), nil
	case yaml.AliasNode:
		return configScalar(v.Alias)
	}
	return "", errors.New("unsupported value")
}

// pathFlags are flags whose values are file or directory paths.
var pathFlags = []string{
	"tls-cert", "tls-key", "model-repo", "dev-cert-dir", "ort-lib", "gossip-key-file",
	"mesh-cert", "mesh-key", "mesh-ca", "mesh-tls-dir", "blob-dir", "nats-creds",
	"nats-password-file", "nats-token-file", "coordinator-key", "feedback-dir",
	"data-dir", "tokens-file", "signing-key", "cidr-table", "nats-users-file", "public-key-out", "enrol-config",
}

func isPathFlag(name string) bool { return slices.Contains(pathFlags, name) }

// closestFlag returns the flag name nearest to name by edit distance, if
// it is near enough to be a typo.
func closestFlag(fs *flag.FlagSet, name string) string {
	best, bestD := "", 3
	fs.VisitAll(func(f *flag.Flag) {
		if d := editDistance(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
