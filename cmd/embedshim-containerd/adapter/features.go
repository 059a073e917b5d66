//go:build linux

package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	apitypes "github.com/containerd/containerd/api/types"
	rt "github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// validateRuntimeFeatures refuses what the OCI runtime would silently
// ignore, as upstream's task manager does before a shim sees the task:
// idmap mounts need a runtime whose `features` says it supports them, or
// the volume's permissions break.
func (r *runtime) validateRuntimeFeatures(ctx context.Context, opts rt.CreateOpts) error {
	if opts.Spec == nil {
		return nil
	}
	var spec specs.Spec
	if err := json.Unmarshal(opts.Spec.GetValue(), &spec); err != nil {
		return fmt.Errorf("unmarshal spec: %w", err)
	}
	if !usesIDMapMounts(spec) {
		return nil
	}
	topts := opts.TaskOptions
	if topts == nil || topts.GetValue() == nil {
		topts = opts.RuntimeOptions
	}
	info, err := r.runtimeInfo(ctx, &apitypes.RuntimeRequest{Options: typeurl.MarshalProto(topts)})
	if err != nil {
		return fmt.Errorf("runtime info: %w", err)
	}
	if info.Features == nil {
		// A runtime without `features` is left alone, as upstream does.
		return nil
	}
	var feat features.Features
	if err := typeurl.UnmarshalTo(info.Features, &feat); err != nil {
		return fmt.Errorf("unmarshal runtime features: %w", err)
	}
	if err := supportsIDMapMounts(&feat); err != nil {
		return fmt.Errorf("idmap mounts not supported: %w", err)
	}
	return nil
}

func usesIDMapMounts(spec specs.Spec) bool {
	for _, m := range spec.Mounts {
		if m.UIDMappings != nil || m.GIDMappings != nil ||
			slices.Contains(m.Options, "idmap") || slices.Contains(m.Options, "ridmap") {
			return true
		}
	}
	return false
}

func supportsIDMapMounts(f *features.Features) error {
	if f.Linux == nil || f.Linux.MountExtensions == nil || f.Linux.MountExtensions.IDMap == nil {
		return errors.New("missing `mountExtensions.idmap` entry in `features` command")
	}
	if e := f.Linux.MountExtensions.IDMap.Enabled; e == nil || !*e {
		return errors.New("entry `mountExtensions.idmap.Enabled` in `features` command not present or disabled")
	}
	return nil
}
