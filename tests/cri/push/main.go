// Command push uploads an OCI image-layout tarball (as tests/image/build
// writes it: one manifest) to a plain-HTTP registry (Distribution API v2)
// under one or more references, so that critest's image references resolve
// offline.
//
//	push -registry 127.0.0.1:5000 IMAGE.tar registry.k8s.io/pause:3.9 ...
//
// A reference's host is dropped: the registry serves every host's
// repositories (the daemon's hosts.toml sends each host to it), so
// registry.k8s.io/pause:3.9 is pushed as pause:3.9.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

func main() {
	registry := flag.String("registry", "", "registry host:port (plain HTTP)")
	flag.Parse()
	if *registry == "" || flag.NArg() < 2 {
		fmt.Fprintln(os.Stderr, "usage: push -registry HOST:PORT IMAGE.tar REF...")
		os.Exit(2)
	}
	if err := run(*registry, flag.Arg(0), flag.Args()[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "push: %v\n", err)
		os.Exit(1)
	}
}

func run(registry, layout string, refs []string) error {
	files, err := readTar(layout)
	if err != nil {
		return err
	}
	var index struct{ Manifests []descriptor }
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		return fmt.Errorf("%s: want an index.json with one manifest (%v)", layout, err)
	}
	mdesc := index.Manifests[0]
	manifest := files[blobPath(mdesc.Digest)]
	var m struct {
		Config descriptor
		Layers []descriptor
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		return fmt.Errorf("%s: manifest: %v", layout, err)
	}
	base := "http://" + registry + "/v2/"
	for _, ref := range refs {
		repo, tag, err := splitRef(ref)
		if err != nil {
			return err
		}
		for _, d := range append([]descriptor{m.Config}, m.Layers...) {
			data, ok := files[blobPath(d.Digest)]
			if !ok {
				return fmt.Errorf("%s: blob %s missing", layout, d.Digest)
			}
			if err := pushBlob(base+repo, d.Digest, data); err != nil {
				return fmt.Errorf("%s: %v", ref, err)
			}
		}
		req, _ := http.NewRequest(http.MethodPut, base+repo+"/manifests/"+tag, bytes.NewReader(manifest))
		req.Header.Set("Content-Type", mdesc.MediaType)
		if err := do(req, http.StatusCreated); err != nil {
			return fmt.Errorf("%s: manifest: %v", ref, err)
		}
	}
	return nil
}

// splitRef turns host/path/name:tag into (path/name, tag).
func splitRef(ref string) (string, string, error) {
	host, rest, ok := strings.Cut(ref, "/")
	if !ok || !strings.ContainsAny(host, ".:") || strings.Contains(rest, "@") {
		return "", "", fmt.Errorf("%q: want HOST/REPO[:TAG]", ref)
	}
	repo, tag := rest, "latest"
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		repo, tag = rest[:i], rest[i+1:]
	}
	return repo, tag, nil
}

// pushBlob does a monolithic upload unless the registry has the blob.
func pushBlob(repoURL, digest string, data []byte) error {
	if resp, err := http.Head(repoURL + "/blobs/" + digest); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
	resp, err := http.Post(repoURL+"/blobs/uploads/", "application/octet-stream", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("start upload of %s: %s", digest, resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("start upload of %s: %v", digest, err)
	}
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	if err := do(req, http.StatusCreated); err != nil {
		return fmt.Errorf("upload %s: %v", digest, err)
	}
	return nil
}

func do(req *http.Request, want int) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", req.Method, (&url.URL{Path: req.URL.Path}).String(), resp.Status, body)
	}
	return nil
}

func blobPath(digest string) string { return "blobs/" + strings.Replace(digest, ":", "/", 1) }

func readTar(p string) (map[string][]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		files[strings.TrimPrefix(h.Name, "./")] = b
	}
}
