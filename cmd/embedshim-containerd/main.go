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

// Command embedshim-containerd is containerd v2.3's own daemon (same
// command.App(), same builtin plugins: CRI, runc.v2 shims, snapshotters,
// NRI, sandbox API, ...) with the embed runtime
// ("io.containerd.runtime.v1.embed") linked in: the task runtime hands that
// runtime name to the embed core and every other one to the shims.
//
// Version strings are set at link time by mk/containerd.mk:
//
//	-X github.com/containerd/containerd/v2/version.Package=github.com/embedshim/embedshim
//	-X github.com/containerd/containerd/v2/version.Version=<version>-embedshim
//	-X github.com/containerd/containerd/v2/version.Revision=<git rev>
package main

import (
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/cmd/containerd/command"
	"github.com/urfave/cli/v2"

	"github.com/embedshim/embedshim/go/exitmon"

	// containerd's builtin plugins, exactly as cmd/containerd links them.
	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"

	// The embed runtime (its init registers io.containerd.runtime.v1.embed).
	"github.com/embedshim/embedshim/cmd/embedshim-containerd/adapter"
)

func main() {
	if err := adapter.Install(); err != nil {
		fmt.Fprintf(os.Stderr, "embedshim-containerd: %s\n", err)
		os.Exit(1)
	}
	app := command.App()
	app.Commands = append(app.Commands, embedshimCommand())
	// Only the daemon (the app's own action: no subcommand, no --help or
	// --version) runs under its reaper, which reaps the orphans of its
	// process tree at once (go/exitmon.RunUnderReaper).
	daemon := app.Action
	app.Action = func(c *cli.Context) error {
		exitmon.RunUnderReaper()
		return daemon(c)
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "embedshim-containerd: %s\n", err)
		os.Exit(1)
	}
}
