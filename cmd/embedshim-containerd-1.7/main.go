/*
   Copyright The containerd Authors.
   Copyright The embedshim Authors.

   Licensed under the Apache License, Version 2.0 (the "License");
   you may not use this file except in compliance with the License.
   You may obtain a copy of the License at

       http://www.apache.org/licenses/LICENSE-2.0

   Unless required by applicable law or agreed to in writing, software
   distributed under the License is distributed on an "AS IS" BASIS,
   WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
   See the License for the specific language governing permissions and
   limitations under the License.
*/

// Command embedshim-containerd is containerd v1.7's own daemon (same
// command.App(), same builtin plugins: CRI, runc.v2, overlayfs, cgroups
// monitor, ...) with the embedshim runtime v1 plugin
// ("io.containerd.runtime.v1.embed") linked in.
//
// Version strings are set at link time by mk/containerd.mk:
//
//	-X github.com/containerd/containerd/version.Package=github.com/embedshim/embedshim
//	-X github.com/containerd/containerd/version.Version=<version>-embedshim
//	-X github.com/containerd/containerd/version.Revision=<git rev>
package main

import (
	"fmt"
	"os"

	"github.com/containerd/containerd/cmd/containerd/command"
	"github.com/containerd/containerd/pkg/seed" //nolint:staticcheck // Global math/rand seed is deprecated, but still used by external dependencies
	"github.com/urfave/cli"

	"github.com/embedshim/embedshim/go/exitmon"

	// containerd's builtin plugins, exactly as cmd/containerd links them
	// (linux builtins, CRI unless -tags no_cri, tracing, snapshotters...).
	_ "github.com/containerd/containerd/cmd/containerd/builtins"
	// EMBEDSHIM-PLUGIN: the integrator adds the embed runtime plugin here
	// (it registers "io.containerd.runtime.v1.embed" in init()):
	_ "github.com/embedshim/embedshim/cmd/embedshim-containerd-1.7/adapter"
)

func init() {
	//nolint:staticcheck // Global math/rand seed is deprecated, but still used by external dependencies
	seed.WithTimeAndRand()
}

func main() {
	app := command.App()
	app.Commands = append(app.Commands, embedshimCommand())
	// Only the daemon (the app's own action: no subcommand, no --help or
	// --version) runs under its reaper, which reaps the orphans of its
	// process tree at once (go/exitmon.RunUnderReaper).
	daemon := app.Action
	app.Action = func(c *cli.Context) error {
		exitmon.RunUnderReaper()
		return cli.HandleAction(daemon, c)
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "embedshim-containerd: %s\n", err)
		os.Exit(1)
	}
}
