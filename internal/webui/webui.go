// Package webui serves the ledger's web UI under /ui/: sign-in with a
// ledger token, Settings → License (status, renewal by paste), the
// organizations list and the audit history. The pages are plain HTML, CSS
// and JavaScript embedded in the binary: no build step, no CDN, nothing
// fetched from elsewhere, so the UI works on an offline install. Every
// page talks to the HTTP API of the same origin with the token the person
// signed in with, kept in the browser's sessionStorage only.
package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is where the UI lives.
const Prefix = "/ui/"

// ContentSecurityPolicy is sent with every UI response: scripts and styles
// only from the ledger itself (no inline script), requests only to the
// ledger's own API, never framed.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// Pages are the UI's addresses; each serves the same document, whose
// script shows the page of its path.
var Pages = []string{"/ui/", "/ui/license/", "/ui/orgs/", "/ui/audit/"}

// asset is one embedded file, ready to serve.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// UI serves the embedded pages and assets.
type UI struct {
	index    asset
	notFound asset
	assets   map[string]asset // by path under /ui/assets/
}

// New loads the embedded files.
func New() *UI {
	u := &UI{assets: map[string]asset{}}
	load := func(name string) asset {
		b, err := static.ReadFile(name)
		if err != nil {
			panic("webui: embedded file missing: " + err.Error()) // a build without its assets
		}
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(name))
		switch path.Ext(name) { // not left to the host's mime tables
		case ".html":
			ctype = "text/html; charset=utf-8"
		case ".css":
			ctype = "text/css; charset=utf-8"
		case ".js":
			ctype = "text/javascript; charset=utf-8"
		case ".svg":
			ctype = "image/svg+xml"
		}
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		return asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	}
	u.index = load("static/index.html")
	u.notFound = load("static/404.html")
	err := fs.WalkDir(static, "static/assets", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			u.assets["/ui/assets/"+strings.TrimPrefix(p, "static/assets/")] = load(p)
		}
		return err
	})
	if err != nil {
		panic("webui: " + err.Error())
	}
	return u
}

// ServeHTTP answers GET and HEAD under /ui/: the pages, the assets, else a
// 404 page. /ui itself redirects to /ui/.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		h.Set("Cache-Control", "no-store")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "/ui" {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
		return
	}
	a, ok := u.assets[p]
	if !ok {
		for _, page := range Pages {
			if p == page {
				a, ok = u.index, true
			}
		}
	}
	if !ok {
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", u.notFound.ctype)
		w.WriteHeader(http.StatusNotFound)
		w.Write(u.notFound.body)
		return
	}
	// Revalidated on every load: an upgraded ledger serves its new UI at
	// once, and an unchanged file costs a 304.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Set("Content-Type", a.ctype)
	http.ServeContent(w, r, "", zeroTime, bytes.NewReader(a.body))
}

// Wrap puts the UI in front of api: /ui/ and /ui are the UI, / redirects
// to /ui/, and everything else goes to api.
func Wrap(api http.Handler) http.Handler {
	ui := New()
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui)
	mux.Handle("/ui", ui)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			api.ServeHTTP(w, r)
			return
		}
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
	mux.Handle("/", api)
	return mux
}

// zeroTime makes http.ServeContent skip Last-Modified: embedded files have
// no modification time; the ETag stands in for it.
var zeroTime = time.Time{}
