package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func versionCmd() *cobra.Command {
	return reads(&cobra.Command{
		Use:   "version",
		Short: "print the version and the VCS revision it was built from",
		Long: `Print the module version and the VCS revision the binary was built from,
as Go recorded them in the build (go build in a git checkout records the
revision; -buildvcs=false or a build outside one does not).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi, ok := debug.ReadBuildInfo()
			if !ok {
				return fmt.Errorf("this binary carries no build information")
			}
			writeVersion(cmd.OutOrStdout(), bi)
			return nil
		},
	})
}

// writeVersion prints the version lines of a build.
func writeVersion(w io.Writer, bi *debug.BuildInfo) {
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	fmt.Fprintf(w, "jobhook %s\n", version)
	if path := bi.Main.Path; path != "" {
		fmt.Fprintf(w, "module:   %s\n", path)
	}
	rev, ok := settings["vcs.revision"]
	switch {
	case !ok:
		fmt.Fprintln(w, "revision: unknown (built without VCS information)")
	case settings["vcs.modified"] == "true":
		fmt.Fprintf(w, "revision: %s (with uncommitted changes)\n", rev)
	default:
		fmt.Fprintf(w, "revision: %s\n", rev)
	}
	if t, ok := settings["vcs.time"]; ok {
		fmt.Fprintf(w, "commit:   %s\n", t)
	}
	fmt.Fprintf(w, "go:       %s\n", bi.GoVersion)
}
