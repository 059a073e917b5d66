//go:build linux

package adapter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"

	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/version"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/embedshim/embedshim/go/core"
)

// runtimeInfo is what runc.v2's shim answers to `-info`: the runtime's name
// and version, the options it was asked about, and the OCI runtime's
// features (`runc features`), which CRI reads (e.g. for idmap mounts).
func (r *runtime) runtimeInfo(ctx context.Context, req *apitypes.RuntimeRequest) (*apitypes.RuntimeInfo, error) {
	info := &apitypes.RuntimeInfo{
		Name:    core.RuntimeName,
		Version: &apitypes.RuntimeVersion{Version: version.Version, Revision: version.Revision},
		Options: req.Options,
	}
	var opts typeurl.Any
	if req.Options != nil {
		opts = req.Options
	}
	binary, err := r.m.RuncBinary(opts)
	if err != nil {
		return nil, err
	}
	abs, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("failed to look up the path of %q: %w", binary, err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, abs, "features")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		// Like runc.v2: a runtime without `features` still has info.
		log.G(ctx).WithError(err).WithField("stderr", stderr.String()).Debug("embed: runtime features")
		return info, nil
	}
	var feat features.Features
	if err := json.Unmarshal(out, &feat); err != nil {
		return nil, fmt.Errorf("parse %s features: %w", abs, err)
	}
	if info.Features, err = typeurl.MarshalAnyToProto(&feat); err != nil {
		return nil, err
	}
	return info, nil
}
