//go:build linux

package core

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runtime-spec/specs-go"
)

const (
	configFilename = "config.json"
	initPidFile    = "init.pid"
	runcLogFile    = "log.json"
)

// bundle is one task's directories, laid out like runtime/v1/linux's:
//   - path (<plugin state>/<ns>/<id>, tmpfs): config.json, rootfs, pid files,
//     runc's log.json and our state.json; it is what runc gets as --bundle.
//   - workDir (<plugin root>/<ns>/<id>, disk): criu work files.
type bundle struct {
	id      string
	path    string
	workDir string
}

func newBundle(id, stateNS, rootNS string, spec []byte) (_ *bundle, err error) {
	if err := os.MkdirAll(stateNS, 0711); err != nil {
		return nil, err
	}
	path := filepath.Join(stateNS, id)
	if err := os.Mkdir(path, 0700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(path)
		}
	}()
	if err := prepareBundleDirectoryPermissions(path, spec); err != nil {
		return nil, err
	}
	workDir := filepath.Join(rootNS, id)
	if err := os.MkdirAll(workDir, 0711); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(workDir)
		}
	}()
	if err := os.MkdirAll(filepath.Join(path, "rootfs"), 0711); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(path, configFilename), spec, 0666); err != nil {
		return nil, err
	}
	return &bundle{id: id, path: path, workDir: workDir}, nil
}

func loadBundle(id, stateNS, rootNS string) *bundle {
	return &bundle{
		id:      id,
		path:    filepath.Join(stateNS, id),
		workDir: filepath.Join(rootNS, id),
	}
}

func (b *bundle) rootfs() string  { return filepath.Join(b.path, "rootfs") }
func (b *bundle) initPid() string { return filepath.Join(b.path, initPidFile) }
func (b *bundle) runcLog() string { return filepath.Join(b.path, runcLogFile) }

func (b *bundle) execPid(execID string) string {
	return filepath.Join(b.path, execID+".pid")
}

func (b *bundle) spec() (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(b.path, configFilename))
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// delete removes both directories. The state directory is renamed to a hidden
// name first so that a crash half-way leaves nothing that restore would take
// for a task (restore skips hidden entries and removes them).
// A rootfs still mounted is not walked into: that would delete the files of
// the container's snapshot, which a next task of the container reuses.
func (b *bundle) delete() error {
	if mountedOver(b.rootfs()) {
		return fmt.Errorf("bundle %s: rootfs is still mounted, not removed", b.path)
	}
	err := atomicDelete(b.path)
	if err2 := atomicDelete(b.workDir); err == nil {
		err = err2
	}
	return err
}

func atomicDelete(path string) error {
	hidden := filepath.Join(filepath.Dir(path), "."+filepath.Base(path))
	if err := os.Rename(path, hidden); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	return os.RemoveAll(hidden)
}

// prepareBundleDirectoryPermissions lets the remapped root of a user-namespaced
// container reach the bundle (same rule as runtime/v1/linux).
func prepareBundleDirectoryPermissions(path string, spec []byte) error {
	var s struct {
		Linux *struct {
			GIDMappings []specs.LinuxIDMapping
		}
	}
	if err := json.Unmarshal(spec, &s); err != nil {
		return fmt.Errorf("parse spec: %w", err)
	}
	if s.Linux == nil {
		return nil
	}
	var gid uint32
	for _, m := range s.Linux.GIDMappings {
		if m.ContainerID == 0 {
			gid = m.HostID
			break
		}
	}
	if gid == 0 {
		return nil
	}
	if err := os.Chown(path, -1, int(gid)); err != nil {
		return err
	}
	return os.Chmod(path, 0710)
}
