//go:build linux

package core

import (
	"path/filepath"

	"github.com/embedshim/embedshim/go/exitmon"
)

// RemovePinsUsage and RemovePinsDescription document the daemons'
// `embedshim remove-pins` command, the same on every build.
const (
	RemovePinsUsage       = "uninstall: remove the runtime's BPF pins (detaching its program); stop the daemon first"
	RemovePinsDescription = `Removes the pinned BPF maps and link of the embed runtime of the daemon
whose root is --root: under --pin-dir if given, else under the default
location (/sys/fs/bpf/embedshim/<hash of the plugin root>), and any pins left
at the old default location <root>/` + RuntimeName + `/bpf (unmounting it).
Every registration and exit record is lost: exit statuses of containers that
ran on the embed runtime cannot be recovered afterwards.`
)

// RemovePins removes the runtime's pins of the daemon whose root is root
// (pinDir: the plugin's pin_dir, if the config sets one) and returns where
// they were. The plugin's root is <root>/<RuntimeName>, as containerd names
// every plugin's root on every version.
func RemovePins(root, pinDir string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	pluginRoot := filepath.Join(abs, RuntimeName)
	if pinDir == "" {
		pinDir = exitmon.DefaultPinDir(pluginRoot)
	}
	return pinDir, exitmon.RemovePins(pluginRoot, pinDir)
}
