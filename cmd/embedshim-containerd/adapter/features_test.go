//go:build linux

package adapter

import (
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// The idmap rule of upstream's task manager: any mapping or idmap option
// needs a runtime that says it supports idmap mounts.
func TestIDMapMountRule(t *testing.T) {
	plain := specs.Spec{Mounts: []specs.Mount{{Destination: "/data", Options: []string{"rbind"}}}}
	byOption := specs.Spec{Mounts: []specs.Mount{{Destination: "/data", Options: []string{"rbind", "idmap"}}}}
	byMapping := specs.Spec{Mounts: []specs.Mount{{Destination: "/data", UIDMappings: []specs.LinuxIDMapping{{Size: 1}}}}}
	if usesIDMapMounts(plain) || !usesIDMapMounts(byOption) || !usesIDMapMounts(byMapping) {
		t.Fatal("wrong idmap detection")
	}
	yes, no := true, false
	for _, c := range []struct {
		f  features.Features
		ok bool
	}{
		{features.Features{}, false},
		{features.Features{Linux: &features.Linux{MountExtensions: &features.MountExtensions{}}}, false},
		{features.Features{Linux: &features.Linux{MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &no}}}}, false},
		{features.Features{Linux: &features.Linux{MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &yes}}}}, true},
	} {
		if err := supportsIDMapMounts(&c.f); (err == nil) != c.ok {
			t.Errorf("%+v: %v, want ok=%v", c.f, err, c.ok)
		}
	}
}
