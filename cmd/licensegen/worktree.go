package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// keyExposure says why the private key just written at path could end up
// in a repository: it lies in a git work tree that does not ignore it,
// where a `git add .` commits it. "" when it does not (outside any work
// tree, or ignored). With git installed, git decides (its .gitignore
// rules, info/exclude, core.excludesFile); without, any work tree above the
// key is reported, since whether it ignores the key cannot be told.
func keyExposure(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	dir := filepath.Dir(abs)
	if git, err := exec.LookPath("git"); err == nil {
		err := exec.Command(git, "-C", dir, "check-ignore", "-q", "--", abs).Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return "" // ignored
		case errors.As(err, &exit) && exit.ExitCode() == 1:
			root := dir
			if out, err := exec.Command(git, "-C", dir, "rev-parse", "--show-toplevel").Output(); err == nil {
				root = strings.TrimSpace(string(out))
			}
			return fmt.Sprintf("%s is inside the git work tree %s, which does not ignore it: a `git add .` would commit the private key. %s",
				path, root, remedy(root, dir))
		}
		// 128: not in a work tree, or git refused to say (a repository
		// owned by another user): look for one.
	}
	root := workTreeAbove(dir)
	if root == "" {
		return ""
	}
	return fmt.Sprintf("%s is inside the git work tree %s, and git is not installed to tell whether it ignores the key: a `git add .` may commit it. %s",
		path, root, remedy(root, dir))
}

// remedy tells how to keep the key out of the repository at root.
func remedy(root, dir string) string {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "Keep private keys outside the checkout (e.g. ~/.config/licensegen)."
	}
	return fmt.Sprintf("Keep private keys outside the checkout (e.g. ~/.config/licensegen), or ignore the directory: echo '/%s/' >> %s",
		filepath.ToSlash(rel), filepath.Join(root, ".gitignore"))
}

// workTreeAbove returns the nearest directory from dir upwards holding a
// .git entry (a directory, or the file of a linked work tree), or "".
func workTreeAbove(dir string) string {
	for {
		if _, err := os.Lstat(filepath.Join(dir, ".git")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
