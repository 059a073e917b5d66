// Command build writes the embedshim offline test image: an OCI image-layout
// tarball importable with `ctr -n NS images import FILE` and with the Go
// client's (*containerd.Client).Import, named docker.io/embedshim/test:latest.
//
// Contents of the single (uncompressed) layer:
//
//	/bin/busybox                 the host's busybox-static (-busybox)
//	/bin/sh, /bin/sleep, ...     symlinks to /bin/busybox at the paths
//	                             `busybox --list-full` gives (i.e. what
//	                             `busybox --install -s` would create)
//	/usr/local/bin/<helper>      static test helpers: every main package
//	                             under -helpers-src (tests/image/helpers/*)
//	                             built with CGO_ENABLED=0, plus any file
//	                             given with -helper NAME=PATH
//	/etc/passwd, /etc/group      root and nobody
//	/etc/hosts, /etc/hostname, /etc/resolv.conf (empty, bind targets)
//	/dev /proc /sys /run /root /tmp (1777) /var/tmp (1777)
//
// Image config: Cmd ["sh"], Env PATH=/usr/local/sbin:/usr/local/bin:
// /usr/sbin:/usr/bin:/sbin:/bin, WorkingDir "/".
//
// The output is reproducible: all tar entries are sorted, owned by 0:0, with a
// fixed mtime (SOURCE_DATE_EPOCH if set, else 2020-01-01T00:00:00Z), and the
// helpers are built with -trimpath -buildid= (same Go toolchain → same bytes).
// No network is needed.
//
// Usage (from the repository root; see mk/containerd.mk `make test-image`):
//
//	go run ./tests/image/build -o _output/image/embedshim-test.tar
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	defaultName = "docker.io/embedshim/test:latest"

	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"

	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"

	imagePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

type helperFlag map[string]string

func (h helperFlag) String() string { return fmt.Sprint(map[string]string(h)) }
func (h helperFlag) Set(v string) error {
	name, p, ok := strings.Cut(v, "=")
	if !ok || name == "" || p == "" || strings.Contains(name, "/") {
		return fmt.Errorf("want NAME=PATH, got %q", v)
	}
	h[name] = p
	return nil
}

func main() {
	var (
		out        = flag.String("o", "_output/image/embedshim-test.tar", "output OCI layout tarball")
		name       = flag.String("name", defaultName, "image name (io.containerd.image.name)")
		busybox    = flag.String("busybox", "/usr/bin/busybox", "static busybox binary to install as /bin/busybox")
		helpersSrc = flag.String("helpers-src", "tests/image/helpers", "directory whose subdirectories are Go main packages built (CGO_ENABLED=0) into /usr/local/bin; empty to skip")
		goBin      = flag.String("go", "go", "go command used to build helpers")
		helpers    = helperFlag{}
	)
	flag.Var(helpers, "helper", "extra static file NAME=PATH installed as /usr/local/bin/NAME (repeatable)")
	flag.Parse()

	if err := run(*out, *name, *busybox, *helpersSrc, *goBin, helpers); err != nil {
		fmt.Fprintf(os.Stderr, "build test image: %v\n", err)
		os.Exit(1)
	}
}

type entry struct {
	hdr  tar.Header
	data []byte
}

func epoch() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
}

func run(out, name, busybox, helpersSrc, goBin string, extra helperFlag) error {
	mtime := epoch()
	files := map[string]*entry{}

	dir := func(p string, mode int64) {
		files[p] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode}}
	}
	file := func(p string, mode int64, data []byte) {
		files[p] = &entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data))}, data: data}
	}
	symlink := func(p, target string) {
		files[p] = &entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: target, Mode: 0o777}}
	}
	// ensure parent directories exist
	parents := func() {
		for p := range files {
			for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
				if _, ok := files[d]; !ok {
					dir(d, 0o755)
				}
			}
		}
	}

	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "usr/local", "usr/local/bin",
		"dev", "proc", "sys", "run", "root", "etc", "var"} {
		dir(d, 0o755)
	}
	dir("root", 0o700)
	dir("tmp", 0o1777)
	dir("var/tmp", 0o1777)

	// busybox and its applets
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("read busybox (install busybox-static): %w", err)
	}
	file("bin/busybox", 0o755, bb)
	list, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("%s --list-full: %w", busybox, err)
	}
	applets := 0
	for _, l := range strings.Split(string(list), "\n") {
		l = strings.Trim(strings.TrimSpace(l), "/")
		if l == "" || l == "bin/busybox" || strings.Contains(l, "..") {
			continue
		}
		symlink(l, "/bin/busybox")
		applets++
	}
	for _, must := range []string{"bin/sh", "bin/sleep", "bin/true", "bin/false", "bin/cat", "bin/echo", "bin/ls", "bin/ps", "usr/bin/head", "usr/bin/yes", "bin/dd", "bin/kill", "usr/bin/env", "usr/bin/id"} {
		if _, ok := files[must]; !ok {
			// busybox builds differ in where they put applets; fall back to /bin
			if _, ok := files["bin/"+path.Base(must)]; !ok {
				if _, ok := files["usr/bin/"+path.Base(must)]; !ok {
					symlink("bin/"+path.Base(must), "/bin/busybox")
				}
			}
		}
	}

	// /etc
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	file("etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"))
	file("etc/hostname", 0o644, nil)
	file("etc/resolv.conf", 0o644, nil)

	// helpers
	if helpersSrc != "" {
		built, cleanup, err := buildHelpers(helpersSrc, goBin)
		if err != nil {
			return err
		}
		defer cleanup()
		for n, p := range built {
			if _, ok := extra[n]; !ok {
				extra[n] = p
			}
		}
	}
	for n, p := range extra {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("helper %s: %w", n, err)
		}
		file("usr/local/bin/"+n, 0o755, data)
	}
	parents()

	// layer tar
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, n := range names {
		e := files[n]
		h := e.hdr
		h.ModTime = mtime
		h.Uid, h.Gid = 0, 0
		h.Format = tar.FormatPAX
		if len(h.Name) < 100 && len(h.Linkname) < 100 {
			h.Format = tar.FormatUSTAR
		}
		if err := tw.WriteHeader(&h); err != nil {
			return fmt.Errorf("layer %s: %w", n, err)
		}
		if len(e.data) > 0 {
			if _, err := tw.Write(e.data); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layerBytes := layer.Bytes()
	layerDigest := digest(layerBytes)

	// config, manifest, index
	config := map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config": map[string]any{
			"Env":        []string{"PATH=" + imagePath},
			"Cmd":        []string{"sh"},
			"WorkingDir": "/",
		},
		"rootfs": map[string]any{
			"type":     "layers",
			"diff_ids": []string{layerDigest},
		},
		"history": []map[string]any{{
			"created":    mtime.Format(time.RFC3339),
			"created_by": "embedshim tests/image/build: busybox-static + test helpers",
		}},
		"created": mtime.Format(time.RFC3339),
	}
	configBytes, err := json.Marshal(config)
	if err != nil {
		return err
	}
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeManifest,
		"config":        desc(mediaTypeConfig, configBytes),
		"layers":        []any{desc(mediaTypeLayer, layerBytes)},
	}
	manifestBytes, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	mdesc := desc(mediaTypeManifest, manifestBytes)
	mdesc["platform"] = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	mdesc["annotations"] = map[string]string{
		annotationImageName: name,
		annotationRefName:   refName(name),
	}
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeIndex,
		"manifests":     []any{mdesc},
	}
	indexBytes, err := json.Marshal(index)
	if err != nil {
		return err
	}

	// outer OCI layout tar
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp.%d", out, os.Getpid())
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	ow := tar.NewWriter(f)
	put := func(n string, data []byte) error {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatUSTAR}
		if err := ow.WriteHeader(h); err != nil {
			return err
		}
		_, err := ow.Write(data)
		return err
	}
	putDir := func(n string) error {
		return ow.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: 0o755, ModTime: mtime, Format: tar.FormatUSTAR})
	}
	blob := func(data []byte) error {
		return put("blobs/sha256/"+strings.TrimPrefix(digest(data), "sha256:"), data)
	}
	steps := []func() error{
		func() error { return put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)) },
		func() error { return put("index.json", indexBytes) },
		func() error { return putDir("blobs/") },
		func() error { return putDir("blobs/sha256/") },
		func() error { return blob(configBytes) },
		func() error { return blob(layerBytes) },
		func() error { return blob(manifestBytes) },
		ow.Close,
		f.Close,
	}
	for _, s := range steps {
		if err := s(); err != nil {
			f.Close()
			return err
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	fmt.Printf("%s: %s manifest %s, %d applets, helpers %v, layer %d bytes\n",
		out, name, digest(manifestBytes), applets, sortedKeys(extra), len(layerBytes))
	return nil
}

// buildHelpers builds every Go main package directly under src into a temp dir.
func buildHelpers(src, goBin string) (map[string]string, func(), error) {
	ents, err := os.ReadDir(src)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, func() {}, nil
		}
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "embedshim-helpers-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	out := map[string]string{}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		gofiles, _ := filepath.Glob(filepath.Join(src, e.Name(), "*.go"))
		if len(gofiles) == 0 {
			continue
		}
		bin := filepath.Join(tmp, e.Name())
		cmd := exec.Command(goBin, "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w -buildid=", "-o", bin, "./"+filepath.ToSlash(filepath.Join(src, e.Name())))
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("build helper %s: %w", e.Name(), err)
		}
		out[e.Name()] = bin
	}
	return out, cleanup, nil
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func desc(mt string, b []byte) map[string]any {
	return map[string]any{"mediaType": mt, "digest": digest(b), "size": len(b)}
}

// refName is the OCI ref name: the tag only ("latest"), as containerd's
// exporter writes it.
func refName(name string) string {
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[i+1:]
	}
	return "latest"
}

func sortedKeys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}
