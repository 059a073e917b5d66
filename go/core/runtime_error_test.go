//go:build linux

package core

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	runc "github.com/containerd/go-runc"
)

// runc failing on a full filesystem cannot write its log either: the error
// then says the filesystem is full instead of a bare exit status.
func TestRuntimeErrorFullFilesystem(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "bundle")
	mountTmpfs(t, dir)
	r := &runc.Runc{Log: filepath.Join(dir, "log.json")}
	exit := errors.New("exit status 1")

	err := runtimeError(r, exit, "OCI runtime create failed")
	if !errors.Is(err, exit) || strings.Contains(err.Error(), "full") {
		t.Fatalf("with room: %v", err)
	}

	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); errors.Is(err, syscall.ENOSPC) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	err = runtimeError(r, exit, "OCI runtime create failed")
	want := "OCI runtime create failed: exit status 1 (no message from the OCI runtime: the filesystem of " + dir + " is full)"
	if !errors.Is(err, exit) || err.Error() != want {
		t.Fatalf("full: %q, want %q", err, want)
	}
}
