//go:build linux

package adapter

// containerd 2.3's names for the shared adapter files (task.go,
// runtime_tasks.go, services.go: symlinks to cmd/_adapter, compiled by both
// daemon builds). The mapping onto containerd is one logic, but containerd
// 2.3 and 1.7 cannot share one go.mod and their packages have other import
// paths, so the shared files import no containerd daemon package: they use
// the aliases and funcs below, which cmd/embedshim-containerd-1.7 binds to
// containerd 1.7 in its own containerd_types.go. An alias is named after
// the package and type it stands for (rtState is rt.State).

import (
	"context"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/events/exchange"
	"github.com/containerd/containerd/v2/core/mount"
	rt "github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/typeurl/v2"
)

type (
	rtTask           = rt.Task
	rtExecProcess    = rt.ExecProcess
	rtCreateOpts     = rt.CreateOpts
	rtExecOpts       = rt.ExecOpts
	rtState          = rt.State
	rtStatus         = rt.Status
	rtExit           = rt.Exit
	rtProcessInfo    = rt.ProcessInfo
	rtConsoleSize    = rt.ConsoleSize
	mountMount       = mount.Mount
	typesAny         = types.Any
	containersStore  = containers.Store
	exchangeExchange = exchange.Exchange
)

func namespaceRequired(ctx context.Context) (string, error) {
	return namespaces.NamespaceRequired(ctx)
}

func withNamespace(ctx context.Context, ns string) context.Context {
	return namespaces.WithNamespace(ctx, ns)
}

// anyToProto is typeurl's MarshalProto here; containerd 1.7's typeurl is
// older and has it as protobuf.FromAny.
func anyToProto(a typeurl.Any) *types.Any { return typeurl.MarshalProto(a) }

func mountAll(ms []mount.Mount, target string) error { return mount.All(ms, target) }

func unmountRecursive(target string) error { return mount.UnmountRecursive(target, 0) }
