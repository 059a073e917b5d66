//go:build linux

package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DebugGet fetches path (e.g. "/debug/pprof/goroutine?debug=1") from the
// daemon's debug server (Options.Debug) and returns the body. Each call
// uses its own connection, closed before it returns: an idle keep-alive
// connection would be a daemon fd that leak checks see.
func (d *Daemon) DebugGet(path string) (string, error) {
	if d.DebugAddress == "" {
		return "", fmt.Errorf("debug server %s: the daemon was started without Options.Debug", path)
	}
	addr := d.DebugAddress
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", addr)
	}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	resp, err := cl.Get("http://debug" + path)
	if err != nil {
		return "", fmt.Errorf("debug server %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("debug server %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("debug server %s: %s", path, resp.Status)
	}
	return string(b), nil
}

// Goroutines is the daemon's goroutine count, from the first line of its
// goroutine profile ("goroutine profile: total N"); needs Options.Debug.
func (d *Daemon) Goroutines() (int64, error) {
	b, err := d.DebugGet("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(b, "\n")
	v, ok := strings.CutPrefix(line, "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile: unexpected first line %q", line)
	}
	return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
}
