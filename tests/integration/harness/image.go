//go:build linux

package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	containerd "github.com/containerd/containerd"
)

const (
	// TestImageRef is the name of the offline test image.
	TestImageRef = "docker.io/embedshim/test:latest"
	// TestImageTar is the image tarball, relative to the repo root
	// (`make test-image`).
	TestImageTar = "_output/image/embedshim-test.tar"
)

var buildImageOnce sync.Mutex

// TestImagePath returns the test image tarball, building it with
// `go run ./tests/image/build` if it does not exist yet.
func TestImagePath(repo string) (string, error) {
	p := filepath.Join(repo, TestImageTar)
	buildImageOnce.Lock()
	defer buildImageOnce.Unlock()
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	cmd := exec.Command("go", "run", "./tests/image/build", "-o", p)
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build test image (make test-image): %w\n%s", err, out)
	}
	return p, nil
}

// ImportTestImage imports the offline test image (docker.io/embedshim/test:latest,
// busybox + /usr/local/bin/exitclock) into ctx's namespace and unpacks it
// into the default snapshotter. It fails the test on error.
func (d *Daemon) ImportTestImage(ctx context.Context) containerd.Image {
	d.t.Helper()
	img, err := d.importTestImage(ctx)
	if err != nil {
		d.t.Fatalf("import test image: %v", err)
	}
	return img
}

func (d *Daemon) importTestImage(ctx context.Context) (containerd.Image, error) {
	p, err := TestImagePath(d.Repo)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c := d.Client()
	if c == nil {
		return nil, fmt.Errorf("daemon not running")
	}
	imgs, err := c.Import(ctx, f)
	if err != nil {
		return nil, err
	}
	for _, i := range imgs {
		if i.Name == TestImageRef {
			img := containerd.NewImage(c, i)
			if err := img.Unpack(ctx, ""); err != nil {
				return nil, fmt.Errorf("unpack: %w", err)
			}
			return img, nil
		}
	}
	return nil, fmt.Errorf("%s not in %s (got %v)", TestImageRef, p, imgs)
}
