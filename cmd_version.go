package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// chronik version: what this binary is, for bug reports and scripts.

func versionCommand() *cli.Command {
	return adminCommand(&cli.Command{
		Name:   "version",
		Usage:  "print the version, the commit it was built from and the Go version",
		Flags:  []cli.Flag{formatFlag("table", "table", "json")},
		Action: withArgs("no arguments", 0, 0, versionAction),
	})
}

// VersionInfo is what `version --format json` prints. Commit and
// commit_time are empty when the binary was built without VCS stamping.
type VersionInfo struct {
	Version    string `json:"version"`
	Commit     string `json:"commit"`
	CommitTime string `json:"commit_time"`
	Modified   bool   `json:"modified"`
	GoVersion  string `json:"go_version"`
	Platform   string `json:"platform"`
}

// buildVersion reads the -ldflags version and what the Go toolchain
// stamped into the binary.
func buildVersion() VersionInfo {
	v := VersionInfo{Version: version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if v.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v.Version = info.Main.Version // go install ...@vX.Y.Z
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func versionAction(c *cli.Context, _ []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	v := buildVersion()
	if format == "json" {
		return writeJSON(c.App.Writer, v)
	}
	commit := v.Commit
	if commit == "" {
		commit = "unknown"
	} else if v.Modified {
		commit += " (modified)"
	}
	_, err = fmt.Fprintf(c.App.Writer, "chronik %s\ncommit: %s\ngo: %s %s\n", v.Version, commit, v.GoVersion, v.Platform)
	return err
}
