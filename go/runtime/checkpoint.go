//go:build linux

package runtime

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/protobuf/types"
	"github.com/containerd/containerd/runtime/linux/runctypes"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/typeurl/v2"
)

// checkpointOptions is the union of runc.v2's and the v1 runtime's options.
type checkpointOptions struct {
	exit, openTCP, externalUnixSockets, terminal, fileLocks bool
	emptyNamespaces                                         []string
	cgroupsMode, workPath                                   string
}

func parseCheckpointOptions(a *types.Any) (*checkpointOptions, error) {
	o := &checkpointOptions{}
	if a == nil || len(a.GetValue()) == 0 && a.GetTypeUrl() == "" {
		return o, nil
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return nil, err
	}
	switch c := v.(type) {
	case *runcoptions.CheckpointOptions:
		*o = checkpointOptions{c.Exit, c.OpenTcp, c.ExternalUnixSockets, c.Terminal, c.FileLocks,
			c.EmptyNamespaces, c.CgroupsMode, c.WorkPath}
	case *runctypes.CheckpointOptions:
		*o = checkpointOptions{c.Exit, c.OpenTcp, c.ExternalUnixSockets, c.Terminal, c.FileLocks,
			c.EmptyNamespaces, c.CgroupsMode, c.WorkPath}
	default:
		return nil, fmt.Errorf("invalid checkpoint options %T: %w", v, errdefs.ErrInvalidArgument)
	}
	return o, nil
}

// Checkpoint dumps the container with runc checkpoint (criu).
func (t *Task) Checkpoint(ctx context.Context, path string, options *types.Any) error {
	// State errors as runc.v2's (plain errors, errdefs class unknown).
	switch t.init.getStatus() {
	case statusRunning, statusPaused, statusPausing:
	case statusCreated:
		return errors.New("cannot checkpoint a task in created state")
	default:
		return errors.New("cannot checkpoint a stopped container")
	}
	if _, err := exec.LookPath("criu"); err != nil {
		return fmt.Errorf("checkpoint needs criu: %v: %w", err, errdefs.ErrNotImplemented)
	}
	o, err := parseCheckpointOptions(options)
	if err != nil {
		return err
	}
	work := o.workPath
	if work == "" {
		work = t.rc.CriuWorkPath
	}
	if work == "" {
		work = filepath.Join(t.bundle.workDir, "criu-work")
	}
	var actions []runc.CheckpointAction
	if !o.exit {
		actions = append(actions, runc.LeaveRunning)
	}
	if err := t.runc.Checkpoint(ctx, t.id, &runc.CheckpointOpts{
		WorkDir:                  work,
		ImagePath:                path,
		AllowOpenTCP:             o.openTCP,
		AllowExternalUnixSockets: o.externalUnixSockets,
		AllowTerminal:            o.terminal,
		FileLocks:                o.fileLocks,
		EmptyNamespaces:          o.emptyNamespaces,
		Cgroups:                  runc.CgroupMode(o.cgroupsMode),
	}, actions...); err != nil {
		// Like the runc shim: criu's first line and where its log is.
		msg := runtimeError(t.runc, err, "runc checkpoint failed").Error()
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		return fmt.Errorf("%s path= %s", msg, filepath.Join(work, "dump.log"))
	}
	return nil
}

// restoreCheckpoint replaces runc start for a task created from a checkpoint.
// runc restore --detach leaves the restored init to the host's init, like
// runc create does; it is registered right after.
func (t *Task) restoreCheckpoint(ctx context.Context) error {
	p := t.init
	pio, rio, err := newProcessIO(p.stdio, t.rc.IoUID, t.rc.IoGID)
	if err != nil {
		return err
	}
	work := t.rc.CriuWorkPath
	if work == "" {
		work = filepath.Join(t.bundle.workDir, "criu-work")
	}
	opts := &runc.RestoreOpts{
		CheckpointOpts: runc.CheckpointOpts{
			ImagePath: t.checkpoint,
			WorkDir:   work,
		},
		PidFile:     t.bundle.initPid(),
		NoPivot:     t.rc.NoPivotRoot,
		Detach:      true,
		NoSubreaper: true,
		IO:          rio,
	}
	if _, err := t.runc.Restore(ctx, t.id, t.bundle.path, opts); err != nil {
		pio.closeAll()
		return runtimeError(t.runc, err, "OCI runtime restore failed")
	}
	p.mu.Lock()
	p.io = pio
	p.mu.Unlock()
	if err := pio.afterRuncStarted(); err != nil {
		return err
	}
	pid, err := runc.ReadPidFile(t.bundle.initPid())
	if err != nil {
		return fmt.Errorf("failed to retrieve OCI runtime container pid: %w", err)
	}
	if err := t.m.attach(p, pid); err != nil {
		return err
	}
	return nil
}
