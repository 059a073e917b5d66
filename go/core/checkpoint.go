//go:build linux

package core

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/typeurl/v2"
)

// CheckpointOptions are runc.v2's checkpoint options; an adapter maps its
// version's own types (the v1 runtime's runctypes) onto them.
type CheckpointOptions struct {
	Exit, OpenTCP, ExternalUnixSockets, Terminal, FileLocks bool
	EmptyNamespaces                                         []string
	CgroupsMode, WorkPath                                   string
}

func parseCheckpointOptions(dec Decoders, a typeurl.Any) (*CheckpointOptions, error) {
	o := &CheckpointOptions{}
	if a == nil || len(a.GetValue()) == 0 && a.GetTypeUrl() == "" {
		return o, nil
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return nil, err
	}
	if c, ok := v.(*runcoptions.CheckpointOptions); ok {
		return &CheckpointOptions{c.Exit, c.OpenTcp, c.ExternalUnixSockets, c.Terminal, c.FileLocks,
			c.EmptyNamespaces, c.CgroupsMode, c.WorkPath}, nil
	}
	if dec.CheckpointOptions != nil {
		if o, ok := dec.CheckpointOptions(v); ok {
			return o, nil
		}
	}
	return nil, fmt.Errorf("invalid checkpoint options %T: %w", v, errdefs.ErrInvalidArgument)
}

// Checkpoint dumps the container with runc checkpoint (criu), in the
// states that allow it (checkpoint).
func (t *Task) Checkpoint(ctx context.Context, path string, options typeurl.Any) error {
	return t.initOp(func(s initState) error { return s.checkpoint(ctx, path, options) })
}

func (t *Task) checkpointTo(ctx context.Context, path string, options typeurl.Any) error {
	if _, err := exec.LookPath("criu"); err != nil {
		return fmt.Errorf("checkpoint needs criu: %v: %w", err, errdefs.ErrNotImplemented)
	}
	o, err := parseCheckpointOptions(t.m.decoders, options)
	if err != nil {
		return err
	}
	work := o.WorkPath
	if work == "" {
		work = t.rc.CriuWorkPath
	}
	if work == "" {
		work = filepath.Join(t.bundle.workDir, "criu-work")
	}
	var actions []runc.CheckpointAction
	if !o.Exit {
		actions = append(actions, runc.LeaveRunning)
	}
	if err := t.runc.Checkpoint(ctx, t.id, &runc.CheckpointOpts{
		WorkDir:                  work,
		ImagePath:                path,
		AllowOpenTCP:             o.OpenTCP,
		AllowExternalUnixSockets: o.ExternalUnixSockets,
		AllowTerminal:            o.Terminal,
		FileLocks:                o.FileLocks,
		EmptyNamespaces:          o.EmptyNamespaces,
		Cgroups:                  runc.CgroupMode(o.CgroupsMode),
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
