//go:build linux

package adapter

import (
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"

	"github.com/embedshim/embedshim/go/core"
)

// decoders are the options types of containerd 2.3 beyond runc.v2's (which
// the core knows): what CRI sends for runtime_type =
// io.containerd.runtime.v1.embed (its generic runtimeoptions, whose TOML keys
// are runc.v2's). containerd 2.x clients no longer send the v1 runtime's
// runctypes.
var decoders = core.Decoders{RuncOptions: runcOptions}

func runcOptions(v interface{}) (func(*core.RuncConfig), bool, error) {
	o, ok := v.(*runtimeoptions.Options)
	if !ok {
		return nil, false, nil
	}
	ro, err := core.DecodeCRIOptions(o.ConfigPath, o.ConfigBody)
	if err != nil {
		return nil, true, err
	}
	return func(rc *core.RuncConfig) { rc.ApplyRuncV2(ro) }, true, nil
}
