// Command nonewprivs stands in for registry.k8s.io/e2e-test-images/nonewprivs:
// installed setuid root in that image and run as uid 1000, it prints its
// effective uid, which is 0 unless the container has no_new_privs set.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
