package main

import (
	"fmt"

	"github.com/containerd/containerd/defaults"
	"github.com/urfave/cli"

	"github.com/embedshim/embedshim/go/core"
)

// embedshimCommand is `embedshim-containerd embedshim ...`: maintenance of
// the embed runtime that containerd's own commands do not cover.
func embedshimCommand() cli.Command {
	return cli.Command{
		Name:  "embedshim",
		Usage: "maintenance of the embed runtime (" + core.RuntimeName + ")",
		Subcommands: []cli.Command{{
			Name:        "remove-pins",
			Usage:       core.RemovePinsUsage,
			Description: core.RemovePinsDescription,
			Flags: []cli.Flag{
				cli.StringFlag{Name: "root", Usage: "containerd's root directory (its config's root)", Value: defaults.DefaultRootDir},
				cli.StringFlag{Name: "pin-dir", Usage: "the embed plugin's pin_dir, if the config sets one"},
			},
			Action: func(c *cli.Context) error {
				dir, err := core.RemovePins(c.String("root"), c.String("pin-dir"))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "removed pins under %s\n", dir)
				return nil
			},
		}},
	}
}
