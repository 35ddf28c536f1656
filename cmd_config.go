package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// The config file holds the same settings as the flags of `chronik serve`:
// a flag --data-dir is the key data_dir, and the variable CHRONIK_DATA_DIR.
// Precedence: flag > environment > file > default.

// configKey is the YAML key of a flag.
func configKey(flag string) string { return strings.ReplaceAll(flag, "-", "_") }

// envName is the environment variable of a flag.
func envName(flag string) string {
	return "CHRONIK_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// loadConfigFile applies the file's settings to every flag not already set
// by a flag or the environment. Every error names the file, the line and
// the key.
func loadConfigFile(c *cli.Context, path string, flags []cli.Flag) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %v", err)
	}
	known := map[string]cli.Flag{}
	for _, f := range flags {
		name := f.Names()[0]
		if name != "config" {
			known[configKey(name)] = f
		}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file: all defaults
		}
		return fmt.Errorf("config %s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s line %d: expected a mapping of key: value settings", path, root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		f, ok := known[k.Value]
		if !ok {
			return fmt.Errorf("config %s line %d: unknown key %q (see chronik serve --help)", path, k.Line, k.Value)
		}
		value, err := configValue(k.Value, v)
		if err != nil {
			return fmt.Errorf("config %s line %d: %s: %v", path, v.Line, k.Value, err)
		}
		name := f.Names()[0]
		if c.IsSet(name) {
			continue // flag or environment wins
		}
		if err := c.Set(name, value); err != nil {
			return fmt.Errorf("config %s line %d: %s: invalid value %q", path, v.Line, k.Value, v.Value)
		}
	}
	return nil
}

// configValue is a setting's value as its flag takes it. Every setting is a
// single value, except peers, which may also be written as a mapping of node
// id to raft address or a list of id=address entries.
func configValue(key string, v *yaml.Node) (string, error) {
	if v.Kind == yaml.ScalarNode {
		return v.Value, nil
	}
	if key == "peers" {
		var parts []string
		switch v.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(v.Content); i += 2 {
				id, addr := v.Content[i], v.Content[i+1]
				if id.Kind != yaml.ScalarNode || addr.Kind != yaml.ScalarNode {
					return "", fmt.Errorf("expected node id: host:port entries")
				}
				parts = append(parts, id.Value+"="+addr.Value)
			}
			return strings.Join(parts, ","), nil
		case yaml.SequenceNode:
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					return "", fmt.Errorf("expected a list of id=host:port entries")
				}
				parts = append(parts, e.Value)
			}
			return strings.Join(parts, ","), nil
		}
	}
	return "", fmt.Errorf("expected a single value")
}

// configReference renders the settings of `chronik serve` as the Markdown
// table the README carries between its config-reference markers.
func configReference() string {
	var b strings.Builder
	b.WriteString("| flag | environment | config key | default | meaning |\n|---|---|---|---|---|\n")
	for _, f := range serveFlags() {
		name := f.Names()[0]
		def := ""
		if df, ok := f.(cli.DocGenerationFlag); ok {
			def = df.GetDefaultText()
			if def == "" {
				def = df.GetValue()
			}
			def = strings.Trim(def, `"`)
		}
		usage := ""
		if uf, ok := f.(cli.DocGenerationFlag); ok {
			usage = uf.GetUsage()
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | `%s` | `%s` | %s |\n", name, envName(name), configKey(name), def, strings.ReplaceAll(usage, "|", "\\|"))
	}
	return b.String()
}

func docsCommand() *cli.Command {
	return &cli.Command{
		Name:   "docs",
		Usage:  "print the configuration reference (Markdown) generated from the serve settings",
		Hidden: true,
		Action: func(c *cli.Context) error {
			_, err := fmt.Fprint(c.App.Writer, configReference())
			return err
		},
	}
}
