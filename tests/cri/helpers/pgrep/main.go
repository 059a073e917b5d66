// Command pgrep stands in for procps' pgrep, which critest calls inside its
// busybox image (`pgrep sleep`) and which Debian's busybox lacks: it prints
// the pid of every process whose name (/proc/PID/comm) matches the extended
// regular expression given, and exits 1 when none does.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: pgrep PATTERN")
		os.Exit(2)
	}
	re, err := regexp.CompilePOSIX(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgrep: %v\n", err)
		os.Exit(2)
	}
	self := os.Getpid()
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	found := false
	for _, c := range comms {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(c)))
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(c)
		if err != nil {
			continue // exited meanwhile
		}
		if re.MatchString(strings.TrimSuffix(string(b), "\n")) {
			fmt.Println(pid)
			found = true
		}
	}
	if !found {
		os.Exit(1)
	}
}
