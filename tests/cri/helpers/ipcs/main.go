// Command ipcs stands in for util-linux' `ipcs -m`, which critest runs inside
// its busybox image to see whether a host shared memory segment is visible
// (HostIpc): it lists the System V shared memory segments of the caller's IPC
// namespace from /proc/sysvipc/shm in ipcs' layout.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] != "-m" {
		fmt.Fprintln(os.Stderr, "usage: ipcs -m")
		os.Exit(2)
	}
	f, err := os.Open("/proc/sysvipc/shm")
	if err != nil {
		fmt.Fprintf(os.Stderr, "ipcs: %v\n", err)
		os.Exit(1)
	}
	defer f.Close()
	fmt.Println("\n------ Shared Memory Segments --------")
	fmt.Printf("%-10s %-10s %-10s %-10s %-10s %-10s\n", "key", "shmid", "owner", "perms", "bytes", "nattch")
	s := bufio.NewScanner(f)
	s.Scan() // header: key shmid perms size cpid lpid nattch uid ...
	for s.Scan() {
		fl := strings.Fields(s.Text())
		if len(fl) < 8 {
			continue
		}
		key, _ := strconv.ParseInt(fl[0], 10, 64)
		perms, _ := strconv.ParseInt(fl[2], 10, 64)
		fmt.Printf("0x%08x %-10s %-10s %-10o %-10s %-10s\n", uint32(key), fl[1], fl[7], perms&0o777, fl[3], fl[6])
	}
}
