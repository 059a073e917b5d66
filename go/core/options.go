//go:build linux

package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/typeurl/v2"
	"github.com/pelletier/go-toml"
	"golang.org/x/sys/unix"
)

// Decoders let an adapter honour the options types of its containerd
// version (the v1 runtime's runctypes, CRI's runtimeoptions, ...). The core
// itself knows runc.v2's Options and CheckpointOptions, which every version
// shares. Each returns ok=false for a type it does not know.
type Decoders struct {
	// RuncOptions turns a container's or task's options into changes of the
	// runc configuration.
	RuncOptions func(v interface{}) (apply func(*RuncConfig), ok bool, err error)
	// CheckpointOptions turns checkpoint options into the runtime's own.
	CheckpointOptions func(v interface{}) (o *CheckpointOptions, ok bool)
}

// RuncConfig is everything needed to rebuild a task's runc invocation; it is
// persisted in state.json so that a restarted containerd drives the same runc
// with the same root.
type RuncConfig struct {
	Binary        string `json:"binary"`
	Root          string `json:"root"` // already includes the namespace
	SystemdCgroup bool   `json:"systemd_cgroup,omitempty"`
	Debug         bool   `json:"debug,omitempty"`
	NoPivotRoot   bool   `json:"no_pivot_root,omitempty"`
	NoNewKeyring  bool   `json:"no_new_keyring,omitempty"`
	CriuWorkPath  string `json:"criu_work_path,omitempty"`
	CriuImagePath string `json:"criu_image_path,omitempty"`
	IoUID         int    `json:"io_uid,omitempty"`
	IoGID         int    `json:"io_gid,omitempty"`
}

// ResolveRuncConfig merges the plugin config with the options a client may
// send: runc.v2's Options (the Go client, CRI for runc.v2 types) here, and
// whatever the adapter's decoders know (the v1 runtime's runctypes, CRI's
// runtimeoptions). So the same container spec runs under either runtime.
// Task options of runc.v2's type replace the container's whole, as
// containerd's task manager hands runc.v2's shim the task's options or else
// the container's, never both; other task options (the v1 runtime's
// CreateOptions) are applied over the container's, as the v1 runtime did.
func ResolveRuncConfig(cfg *Config, ns string, dec Decoders, runtimeOpts, taskOpts typeurl.Any) (*RuncConfig, error) {
	rc := &RuncConfig{
		Binary:        cfg.Runtime,
		Root:          cfg.RuntimeRoot,
		SystemdCgroup: cfg.SystemdCgroup,
		Debug:         cfg.Debug,
	}
	empty := func(a typeurl.Any) bool { return a == nil || len(a.GetValue()) == 0 && a.GetTypeUrl() == "" }
	if !empty(taskOpts) {
		if v, err := typeurl.UnmarshalAny(taskOpts); err == nil {
			if _, ok := v.(*runcoptions.Options); ok {
				runtimeOpts = nil
			}
		}
	}
	for _, a := range []typeurl.Any{runtimeOpts, taskOpts} {
		if empty(a) {
			continue
		}
		v, err := typeurl.UnmarshalAny(a)
		if err != nil {
			return nil, fmt.Errorf("embed: unmarshal runtime options %q: %v: %w", a.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
		}
		if o, ok := v.(*runcoptions.Options); ok {
			rc.ApplyRuncV2(o)
			continue
		}
		var apply func(*RuncConfig)
		ok := false
		if dec.RuncOptions != nil {
			if apply, ok, err = dec.RuncOptions(v); err != nil {
				return nil, err
			}
		}
		if !ok {
			return nil, fmt.Errorf("embed: unsupported runtime options type %T (%s): %w", v, a.GetTypeUrl(), errdefs.ErrInvalidArgument)
		}
		apply(rc)
	}
	rc.Root = filepath.Join(rc.Root, ns)
	return rc, nil
}

// ApplyRuncV2 applies runc.v2's options.
func (rc *RuncConfig) ApplyRuncV2(o *runcoptions.Options) {
	if o.BinaryName != "" {
		rc.Binary = o.BinaryName
	}
	if o.Root != "" {
		rc.Root = o.Root
	}
	rc.SystemdCgroup = rc.SystemdCgroup || o.SystemdCgroup
	rc.NoPivotRoot = o.NoPivotRoot
	rc.NoNewKeyring = o.NoNewKeyring
	rc.IoUID, rc.IoGID = int(o.IoUid), int(o.IoGid)
	rc.CriuWorkPath, rc.CriuImagePath = o.CriuWorkPath, o.CriuImagePath
}

// DecodeCRIOptions reads the runc.v2 options out of CRI's generic runtime
// options (runtimeoptions.v1.Options, what CRI sends for a runtime_type it
// does not know, like ours): the TOML of the runtime's options section
// (configBody), or the file it names (configPath), decoded as CRI decodes
// runc.v2's own.
func DecodeCRIOptions(configPath string, configBody []byte) (*runcoptions.Options, error) {
	body := configBody
	if configPath != "" {
		b, err := os.ReadFile(configPath)
		if err != nil {
			return nil, fmt.Errorf("embed: CRI runtime options config_path: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		body = b
	}
	ro := &runcoptions.Options{}
	if len(body) == 0 {
		return ro, nil
	}
	tree, err := toml.LoadBytes(body)
	if err == nil {
		err = tree.Unmarshal(ro)
	}
	if err != nil {
		return nil, fmt.Errorf("embed: CRI runtime options (TOML) %q: %v: %w", body, err, errdefs.ErrInvalidArgument)
	}
	return ro, nil
}

// newRunc builds the go-runc client for a task. PdeathSignal makes a runc
// command die with containerd instead of lingering; it does not reach the
// container (runc-init is not runc's thread). The bundle is the working
// directory, as under runc.v2 (whose shim runs there): OCI runtime wrappers
// read init.pid relative to it.
func (rc *RuncConfig) newRunc(b *bundle) *runc.Runc {
	return &runc.Runc{
		Command:       rc.Binary,
		WorkDir:       b.path,
		Log:           b.runcLog(),
		LogFormat:     runc.JSON,
		PdeathSignal:  unix.SIGKILL,
		Root:          rc.Root,
		SystemdCgroup: rc.SystemdCgroup,
		Debug:         rc.Debug,
	}
}

// runtimeError turns a failed runc command into an error carrying runc's own
// last error message, which it writes to log.json rather than stderr (stderr
// may be the container's stdio).
func runtimeError(r *runc.Runc, rErr error, msg string) error {
	if rErr == nil {
		return nil
	}
	rMsg, err := lastRuntimeError(r)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %s (%s): %w", msg, "unable to retrieve OCI runtime error", err.Error(), rErr)
	case rMsg == "" && r.Log != "" && fsFull(filepath.Dir(r.Log)):
		// runc could not say why: it could not write its log either.
		return fmt.Errorf("%s: %w (no message from the OCI runtime: the filesystem of %s is full)", msg, rErr, filepath.Dir(r.Log))
	case rMsg == "":
		return fmt.Errorf("%s: %w", msg, rErr)
	default:
		return fmt.Errorf("%s: %s", msg, rMsg)
	}
}

// fsFull reports whether the filesystem holding dir has no block left.
func fsFull(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Blocks > 0 && st.Bavail == 0
}

func lastRuntimeError(r *runc.Runc) (string, error) {
	if r.Log == "" {
		return "", nil
	}
	f, err := os.Open(r.Log)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	defer f.Close()
	var (
		msg string
		ent struct {
			Level string
			Msg   string
			Time  time.Time
		}
	)
	dec := json.NewDecoder(f)
	for {
		if err := dec.Decode(&ent); err != nil {
			if err == io.EOF {
				break
			}
			return "", err
		}
		if ent.Level == "error" {
			msg = strings.TrimSpace(ent.Msg)
		}
	}
	return msg, nil
}

// RuncBinary is the OCI runtime binary a task created with options would
// run (for runtime info queries).
func (m *Manager) RuncBinary(options typeurl.Any) (string, error) {
	rc, err := ResolveRuncConfig(m.config, "", m.decoders, nil, options)
	if err != nil {
		return "", err
	}
	return rc.Binary, nil
}
