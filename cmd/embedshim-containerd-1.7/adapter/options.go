//go:build linux

package adapter

import (
	runtimeoptions "github.com/containerd/containerd/pkg/runtimeoptions/v1"
	"github.com/containerd/containerd/runtime/linux/runctypes"

	"github.com/embedshim/embedshim/go/core"
)

// decoders are the options types of containerd 1.7 beyond runc.v2's (which
// the core knows): what clients of a v1 runtime send (runctypes: RuncOptions
// on the container, CreateOptions on the task, CheckpointOptions) and what
// CRI sends for runtime_type = io.containerd.runtime.v1.embed (its generic
// runtimeoptions, whose TOML keys are runc.v2's).
var decoders = core.Decoders{
	RuncOptions:       runcOptions,
	CheckpointOptions: checkpointOptions,
}

func runcOptions(v interface{}) (func(*core.RuncConfig), bool, error) {
	switch o := v.(type) {
	case *runtimeoptions.Options:
		ro, err := core.DecodeCRIOptions(o.ConfigPath, o.ConfigBody)
		if err != nil {
			return nil, true, err
		}
		return func(rc *core.RuncConfig) { rc.ApplyRuncV2(ro) }, true, nil
	case *runctypes.RuncOptions:
		return func(rc *core.RuncConfig) {
			if o.Runtime != "" {
				rc.Binary = o.Runtime
			}
			if o.RuntimeRoot != "" {
				rc.Root = o.RuntimeRoot
			}
			rc.SystemdCgroup = rc.SystemdCgroup || o.SystemdCgroup
		}, true, nil
	case *runctypes.CreateOptions:
		return func(rc *core.RuncConfig) {
			rc.NoPivotRoot = o.NoPivotRoot
			rc.NoNewKeyring = o.NoNewKeyring
			rc.IoUID, rc.IoGID = int(o.IoUid), int(o.IoGid)
			rc.CriuWorkPath, rc.CriuImagePath = o.CriuWorkPath, o.CriuImagePath
		}, true, nil
	}
	return nil, false, nil
}

func checkpointOptions(v interface{}) (*core.CheckpointOptions, bool) {
	c, ok := v.(*runctypes.CheckpointOptions)
	if !ok {
		return nil, false
	}
	return &core.CheckpointOptions{Exit: c.Exit, OpenTCP: c.OpenTcp, ExternalUnixSockets: c.ExternalUnixSockets,
		Terminal: c.Terminal, FileLocks: c.FileLocks, EmptyNamespaces: c.EmptyNamespaces,
		CgroupsMode: c.CgroupsMode, WorkPath: c.WorkPath}, true
}
