package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// keyExposure says why the private key at path could end up in a
// repository: it lies in a git work tree that does not ignore it, where a
// `git add .` commits it. "" when it does not (outside any work tree, or
// ignored). Git decides what it ignores (.gitignore files, info/exclude,
// core.excludesFile); without git, or when git cannot say, any work tree
// above the key is reported.
func keyExposure(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	root := workTreeAbove(filepath.Dir(abs))
	if root == "" {
		return ""
	}
	risk := "which does not ignore it: a `git add .` would commit the private key"
	git, err := exec.LookPath("git")
	if err != nil {
		risk = "and git is not installed to tell whether it ignores the key: a `git add .` may commit it"
	} else {
		err := exec.Command(git, "-C", root, "check-ignore", "-q", "--", abs).Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return "" // ignored
		case !errors.As(err, &exit) || exit.ExitCode() != 1:
			// 128: git refused (a repository owned by another user…).
			risk = "and git could not tell whether it ignores the key: a `git add .` may commit it"
		}
	}
	return fmt.Sprintf("%s is inside the git work tree %s, %s. %s", path, root, risk, remedy(root, filepath.Dir(abs)))
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
