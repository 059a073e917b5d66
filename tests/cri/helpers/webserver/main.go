// Command webserver stands in for the nginx and httpd images critest runs
// (registry.k8s.io/e2e-test-images/nginx, .../httpd,
// gcr.io/k8s-staging-cri-tools/hostnet-nginx-*): it is installed in those
// images as /usr/local/bin/nginx and /usr/local/bin/httpd.
//
// What critest looks at, and so what this does:
//   - an HTTP 200 on GET / on the listen address (port mapping, port forward,
//     pod IP);
//   - its name (argv[0]) in `pidof nginx` and, with the image's command
//     `nginx -g "master process"`, "master process" in /proc/1/cmdline;
//   - /var/run/nginx.pid holding its pid (-pidfile);
//   - its name in the container's log (the httpd container's log).
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
)

func main() {
	name := filepath.Base(os.Args[0])
	listen := flag.String("listen", ":80", "TCP address to serve on")
	pidfile := flag.String("pidfile", "", "file to write the pid to")
	flag.String("g", "", "ignored: nginx's directives flag, kept so the image command reads like nginx's")
	flag.Parse()

	if *pidfile != "" {
		_ = os.MkdirAll(filepath.Dir(*pidfile), 0o755) // /var/run is not in the image
		if err := os.WriteFile(*pidfile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	fmt.Printf("%s: serving on %s\n", name, l.Addr())

	// As pid 1 of a container, signals with the default action are ignored:
	// stop on SIGTERM/SIGINT like nginx does.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	go func() {
		<-sig
		os.Exit(0)
	}()
	err = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "<html><body><h1>Welcome to %s!</h1></body></html>\n", name)
	}))
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	os.Exit(1)
}
