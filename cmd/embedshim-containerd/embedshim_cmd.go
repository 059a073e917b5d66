package main

import (
	"fmt"
	"path/filepath"

	"github.com/containerd/containerd/defaults"
	"github.com/urfave/cli"

	"github.com/embedshim/embedshim/go/exitmon"
)

// embedPluginDir is the embed runtime plugin's root under containerd's root
// (<plugin type>.<id>, as containerd names every plugin's root).
const embedPluginDir = "io.containerd.runtime.v1.embed"

// embedshimCommand is `embedshim-containerd embedshim ...`: maintenance of
// the embed runtime that containerd's own commands do not cover.
func embedshimCommand() cli.Command {
	return cli.Command{
		Name:  "embedshim",
		Usage: "maintenance of the embed runtime (io.containerd.runtime.v1.embed)",
		Subcommands: []cli.Command{{
			Name:  "remove-pins",
			Usage: "uninstall: remove the runtime's BPF pins (detaching its program); stop the daemon first",
			Description: `Removes the pinned BPF maps and link of the embed runtime of the daemon
whose root is --root: under --pin-dir if given, else under the default
location (/sys/fs/bpf/embedshim/<hash of the plugin root>), and any pins left
at the old default location <root>/` + embedPluginDir + `/bpf (unmounting it).
Every registration and exit record is lost: exit statuses of containers that
ran on the embed runtime cannot be recovered afterwards.`,
			Flags: []cli.Flag{
				cli.StringFlag{
					Name:  "root",
					Usage: "containerd's root directory (its config's root)",
					Value: defaults.DefaultRootDir,
				},
				cli.StringFlag{
					Name:  "pin-dir",
					Usage: "the embed plugin's pin_dir, if the config sets one",
				},
			},
			Action: func(c *cli.Context) error {
				root, err := filepath.Abs(c.String("root"))
				if err != nil {
					return err
				}
				pluginRoot := filepath.Join(root, embedPluginDir)
				pinDir := c.String("pin-dir")
				if pinDir == "" {
					pinDir = exitmon.DefaultPinDir(pluginRoot)
				}
				if err := exitmon.RemovePins(pluginRoot, pinDir); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "removed pins under %s\n", pinDir)
				return nil
			},
		}},
	}
}
