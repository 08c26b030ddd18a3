package manifesttest

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"testing"
)

// The init containers copy Secret files into a memory volume so that the
// binaries, which refuse seed and tokens files group or others may read,
// get 0400 files of their own user. simulateInit replays such a script the
// way the kubelet and a POSIX shell would, from the pod spec alone.

// simFile is a file an init container leaves in a shared volume.
type simFile struct {
	Mode   int    // permission bits
	UID    int64  // owner
	Secret string // the Secret it was copied from
	Key    string // and its key
}

// simResult maps "<volume>:<path inside the volume>" to the file there.
type simResult map[string]simFile

func simKey(vol, rel string) string { return vol + ":" + strings.TrimPrefix(rel, "/") }

// effectiveUID is the user a container runs as.
func effectiveUID(pod podSpec, c container) (int64, bool) {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return *c.SecurityContext.RunAsUser, true
	}
	if pod.SecurityContext.RunAsUser != nil {
		return *pod.SecurityContext.RunAsUser, true
	}
	return 0, false
}

// secretFileMode is the mode and owner the kubelet gives a file of a
// Secret volume: defaultMode (or the item's mode), owned by root; with an
// fsGroup the group becomes fsGroup and read access is added for it,
// whatever the mode said.
func secretFileMode(pod podSpec, v volume, key string) (mode int, groupReadable bool) {
	mode = 0o644 // the API server's default
	if v.Secret.DefaultMode != nil {
		mode = *v.Secret.DefaultMode
	}
	for _, it := range v.Secret.Items {
		if it.Key == key && it.Mode != nil {
			mode = *it.Mode
		}
	}
	if pod.SecurityContext.FSGroup != nil {
		mode |= 0o440
		return mode, true
	}
	return mode, false
}

// secretKeyAt is the Secret key behind a file of a Secret volume.
func secretKeyAt(v volume, rel string) (string, bool) {
	rel = strings.TrimPrefix(rel, "/")
	if len(v.Secret.Items) == 0 {
		if strings.Contains(rel, "/") {
			return "", false
		}
		return rel, true
	}
	for _, it := range v.Secret.Items {
		if path.Clean(it.Path) == rel {
			return it.Key, true
		}
	}
	return "", false
}

// initScript is the shell script of an init container, or an error when
// it is not run as `sh -c SCRIPT` (or -ec, -euc).
func initScript(c container) (string, error) {
	argv := append(append([]string{}, c.Command...), c.Args...)
	if len(argv) == 3 && (argv[0] == "/bin/sh" || argv[0] == "sh") && strings.HasPrefix(argv[1], "-") && strings.HasSuffix(argv[1], "c") {
		if !strings.Contains(argv[1], "e") {
			return "", fmt.Errorf("init container %s: run the script with sh -ec so that a failed copy fails the pod", c.Name)
		}
		return argv[2], nil
	}
	return "", fmt.Errorf("init container %s: want command [/bin/sh, -ec, SCRIPT], got %q", c.Name, argv)
}

// simulateInit replays every init container of pod. It understands umask,
// mkdir -p, cp SRC DST and chmod MODE FILE… — anything else is reported,
// so that the simulation never silently skips a step.
func simulateInit(t testing.TB, m *manifests, ns string, pod podSpec) (simResult, []string) {
	t.Helper()
	files := simResult{}
	var problems []string
	vols := map[string]volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	for _, c := range pod.InitContainers {
		uid, ok := effectiveUID(pod, c)
		if !ok {
			problems = append(problems, fmt.Sprintf("init container %s: set runAsUser", c.Name))
			continue
		}
		script, err := initScript(c)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		umask := 0o022
		// resolve maps a path of this container to its volume.
		resolve := func(p string) (volumeMount, volume, string, error) {
			vm, v, ok := mountFor(pod, c, p)
			if !ok || v.Name == "" {
				return vm, v, "", fmt.Errorf("%s is on no volume of init container %s", p, c.Name)
			}
			return vm, v, strings.TrimPrefix(strings.TrimPrefix(p, strings.TrimSuffix(vm.MountPath, "/")), "/"), nil
		}
		for lineNo, line := range strings.Split(script, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			fail := func(format string, args ...any) {
				problems = append(problems, fmt.Sprintf("init container %s, line %d %q: %s", c.Name, lineNo+1, line, fmt.Sprintf(format, args...)))
			}
			if strings.ContainsAny(line, "\"'`$;&|<>*?") {
				fail("quoting, variables, globs, redirections and command lists are not simulated")
				continue
			}
			f := strings.Fields(line)
			switch f[0] {
			case "umask":
				if len(f) != 2 {
					fail("want umask MODE")
					continue
				}
				u, err := strconv.ParseInt(f[1], 8, 32)
				if err != nil {
					fail("%v", err)
					continue
				}
				umask = int(u)
			case "mkdir":
				if len(f) < 3 || f[1] != "-p" {
					fail("want mkdir -p DIR…")
					continue
				}
				for _, d := range f[2:] {
					vm, _, _, err := resolve(d)
					if err != nil {
						fail("%v", err)
					} else if vm.ReadOnly {
						fail("%s is mounted read-only", vm.MountPath)
					}
				}
			case "cp":
				if len(f) != 3 {
					fail("want cp SRC DST")
					continue
				}
				_, sv, srel, err := resolve(f[1])
				if err != nil {
					fail("%v", err)
					continue
				}
				if sv.Secret == nil {
					fail("the source is not on a Secret volume")
					continue
				}
				key, ok := secretKeyAt(sv, srel)
				if !ok {
					fail("Secret volume %s has no file %s", sv.Name, srel)
					continue
				}
				if data, ok := m.secretData(t, ns, sv.Secret.SecretName); ok {
					if _, ok := data[key]; !ok {
						fail("Secret %s has no key %s", sv.Secret.SecretName, key)
					}
				} else {
					fail("Secret %s/%s has no example", ns, sv.Secret.SecretName)
				}
				mode, groupReadable := secretFileMode(pod, sv, key)
				if uid != 0 && !(groupReadable && mode&0o040 != 0) && mode&0o004 == 0 {
					fail("uid %d cannot read %s: the kubelet writes Secret files as root (mode %04o) and only an fsGroup gives other users access", uid, f[1], mode)
					continue
				}
				dvm, dv, drel, err := resolve(f[2])
				if err != nil {
					fail("%v", err)
					continue
				}
				if dvm.ReadOnly {
					fail("%s is mounted read-only", dvm.MountPath)
					continue
				}
				if dv.EmptyDir == nil {
					fail("the destination is not on an emptyDir volume")
					continue
				}
				files[simKey(dv.Name, drel)] = simFile{Mode: mode &^ umask & 0o777, UID: uid, Secret: sv.Secret.SecretName, Key: key}
			case "chmod":
				if len(f) < 3 {
					fail("want chmod MODE FILE…")
					continue
				}
				mode, err := strconv.ParseInt(f[1], 8, 32)
				if err != nil {
					fail("want an octal mode: %v", err)
					continue
				}
				for _, p := range f[2:] {
					_, v, rel, err := resolve(p)
					if err != nil {
						fail("%v", err)
						continue
					}
					sf, ok := files[simKey(v.Name, rel)]
					if !ok {
						fail("%s was not written before", p)
						continue
					}
					sf.Mode = int(mode)
					files[simKey(v.Name, rel)] = sf
				}
			default:
				fail("command %s is not simulated", f[0])
			}
		}
	}
	return files, problems
}
