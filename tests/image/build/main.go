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
// Flags for images other than the default one (tests/cri builds critest's
// images with them, see tests/cri/images.sh): -applets hardlink installs the
// applets as hard links to /bin/busybox (as upstream busybox images do, so a
// masked /bin/ls masks only ls) and -libs copies the shared libraries a
// dynamic busybox needs (from ldd) to their paths; -user, -entrypoint, -cmd,
// -expose and -label set the image config; -passwd and -group append lines
// to /etc/passwd and /etc/group; -setuid NAME installs helper NAME setuid
// root.
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

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// options are the image's contents and config beyond the defaults.
type options struct {
	applets    string   // "symlink" or "hardlink"
	libs       bool     // copy busybox's shared libraries (ldd)
	user       string   // config User
	entrypoint []string // config Entrypoint
	cmd        []string // config Cmd (default ["sh"])
	expose     []string // config ExposedPorts, e.g. 80/tcp
	labels     []string // config Labels, KEY=VALUE
	passwd     []string // extra /etc/passwd lines
	group      []string // extra /etc/group lines
	setuid     []string // helpers installed 04755
}

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
		o          options
		entrypoint = flag.String("entrypoint", "", "config Entrypoint as a JSON array")
		cmd        = flag.String("cmd", `["sh"]`, "config Cmd as a JSON array")
	)
	flag.Var(helpers, "helper", "extra static file NAME=PATH installed as /usr/local/bin/NAME (repeatable)")
	flag.StringVar(&o.applets, "applets", "symlink", "how applets link to /bin/busybox: symlink or hardlink")
	flag.BoolVar(&o.libs, "libs", false, "copy the shared libraries busybox needs (ldd) into the image")
	flag.StringVar(&o.user, "user", "", "config User")
	flag.Var((*listFlag)(&o.expose), "expose", "config ExposedPorts entry, e.g. 80/tcp (repeatable)")
	flag.Var((*listFlag)(&o.labels), "label", "config label KEY=VALUE (repeatable)")
	flag.Var((*listFlag)(&o.passwd), "passwd", "line appended to /etc/passwd (repeatable)")
	flag.Var((*listFlag)(&o.group), "group", "line appended to /etc/group (repeatable)")
	flag.Var((*listFlag)(&o.setuid), "setuid", "helper NAME installed setuid root (repeatable)")
	flag.Parse()
	for _, j := range []struct {
		s   string
		dst *[]string
	}{{*entrypoint, &o.entrypoint}, {*cmd, &o.cmd}} {
		if j.s == "" {
			continue
		}
		if err := json.Unmarshal([]byte(j.s), j.dst); err != nil {
			fmt.Fprintf(os.Stderr, "build test image: %q: want a JSON array of strings: %v\n", j.s, err)
			os.Exit(2)
		}
	}
	if o.applets != "symlink" && o.applets != "hardlink" {
		fmt.Fprintf(os.Stderr, "build test image: -applets %q: want symlink or hardlink\n", o.applets)
		os.Exit(2)
	}

	if err := run(*out, *name, *busybox, *helpersSrc, *goBin, helpers, o); err != nil {
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

func run(out, name, busybox, helpersSrc, goBin string, extra helperFlag, o options) error {
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
	applet := symlink
	if o.applets == "hardlink" {
		// a hard link names the earlier entry by its path in the archive
		applet = func(p, _ string) {
			files[p] = &entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: p, Linkname: "bin/busybox", Mode: 0o755}}
		}
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
		applet(l, "/bin/busybox")
		applets++
	}
	for _, must := range []string{"bin/sh", "bin/sleep", "bin/true", "bin/false", "bin/cat", "bin/echo", "bin/ls", "bin/ps", "usr/bin/head", "usr/bin/yes", "bin/dd", "bin/kill", "usr/bin/env", "usr/bin/id"} {
		if _, ok := files[must]; !ok {
			// busybox builds differ in where they put applets; fall back to /bin
			if _, ok := files["bin/"+path.Base(must)]; !ok {
				if _, ok := files["usr/bin/"+path.Base(must)]; !ok {
					applet("bin/"+path.Base(must), "/bin/busybox")
				}
			}
		}
	}

	if o.libs {
		libs, err := sharedLibs(busybox)
		if err != nil {
			return err
		}
		for _, l := range libs {
			data, err := os.ReadFile(l) // through symlinks: the image gets the file
			if err != nil {
				return err
			}
			file(strings.TrimPrefix(l, "/"), 0o755, data)
		}
	}

	// /etc
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"+lines(o.passwd)))
	file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"+lines(o.group)))
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
	for _, n := range o.setuid {
		e, ok := files["usr/local/bin/"+n]
		if !ok {
			return fmt.Errorf("-setuid %s: no such helper", n)
		}
		e.hdr.Mode = 0o4755
	}
	parents()

	// layer tar
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	// hard links after everything else: their target must be extracted first
	sort.SliceStable(names, func(i, j int) bool {
		return files[names[i]].hdr.Typeflag != tar.TypeLink && files[names[j]].hdr.Typeflag == tar.TypeLink
	})
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
	cfg := map[string]any{
		"Env":        []string{"PATH=" + imagePath},
		"WorkingDir": "/",
	}
	if len(o.cmd) > 0 {
		cfg["Cmd"] = o.cmd
	}
	if len(o.entrypoint) > 0 {
		cfg["Entrypoint"] = o.entrypoint
	}
	if o.user != "" {
		cfg["User"] = o.user
	}
	if len(o.expose) > 0 {
		ports := map[string]struct{}{}
		for _, p := range o.expose {
			ports[p] = struct{}{}
		}
		cfg["ExposedPorts"] = ports
	}
	if len(o.labels) > 0 {
		labels := map[string]string{}
		for _, l := range o.labels {
			k, v, _ := strings.Cut(l, "=")
			labels[k] = v
		}
		cfg["Labels"] = labels
	}
	config := map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       cfg,
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

// sharedLibs lists the shared libraries (and the ELF interpreter) that bin
// loads, as ldd prints them; none for a static binary.
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %v: %s", bin, err, out)
	}
	var libs []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0]) // the interpreter, e.g. /lib64/ld-linux-x86-64.so.2
		}
	}
	return libs, nil
}

func lines(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return strings.Join(l, "\n") + "\n"
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
