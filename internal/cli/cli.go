// Package cli holds what the project's command-line programs share: exit
// codes, running a kong grammar with them, reading input files, and logging
// setup. Programs keep main() to a call of Run so tests can run the real
// command in-process.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/alecthomas/kong"

	"github.com/licenseledger/ledger/internal/secfile"
)

// Exit codes shared by every command.
const (
	ExitOK          = 0 // success; for `license verify`, valid or grace
	ExitFailed      = 1 // not valid, verification failed, differences found
	ExitUsage       = 2 // bad flags, arguments or configuration (a secret others may read)
	ExitRejected    = 3 // the API answered 4xx (its code on stderr)
	ExitUnavailable = 4 // a server or store could not be reached
)

// Error is an error with the exit code it maps to. Commands return it to
// exit with a code other than ExitFailed.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Usage returns an error that exits with ExitUsage.
func Usage(format string, args ...any) error {
	return &Error{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// Silent is an error that sets the exit code without printing anything more:
// the command already said what it had to.
func Silent(code int) error { return &Error{Code: code, Err: errSilent} }

var errSilent = errors.New("")

// Env is what a command may touch of the process: bound into every kong
// command's Run method so tests can run commands in-process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Now    func() time.Time
}

// OSEnv is the real process environment.
func OSEnv() *Env {
	return &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Now: time.Now}
}

type exitPanic int

// Parser is the kong parser Run uses for grammar: a program's whole
// command line, which tests walk (internal/cli/clitest).
func Parser(name, description string, grammar any, env *Env, opts ...kong.Option) (*kong.Kong, error) {
	return kong.New(grammar, append([]kong.Option{
		kong.Name(name),
		kong.Description(description),
		kong.Writers(env.Stdout, env.Stderr),
		kong.Exit(func(c int) { panic(exitPanic(c)) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Bind(env),
	}, opts...)...)
}

// Run parses args against grammar (a kong struct with commands), runs the
// chosen command with env bound, and returns the exit code. --help exits 0;
// parse errors exit ExitUsage, with a suggestion for a mistyped command.
// A shell's completion request (COMP_LINE set) is answered instead.
func Run(name, description string, grammar any, args []string, env *Env, opts ...kong.Option) (code int) {
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitPanic)
			if !ok {
				panic(r)
			}
			code = int(c)
		}
	}()
	parser, err := Parser(name, description, grammar, env, opts...)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return ExitUsage
	}
	complete(parser, func(c int) { panic(exitPanic(c)) })
	ctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		if s := suggest(parser.Model, args, err); s != "" {
			fmt.Fprintf(env.Stderr, "%s: %s\n", name, s)
		}
		var pe *kong.ParseError
		if errors.As(err, &pe) && pe.Context != nil {
			fmt.Fprintf(env.Stderr, "Run '%s --help' for usage.\n", name)
		}
		return ExitUsage
	}
	return ExitCode(env.Stderr, name, ctx.Run())
}

// ExitCode prints err (unless silent) and returns its exit code. A secret
// file that group or others may read (secfile.ErrExposed) is a
// configuration error, ExitUsage, whatever the command was doing: no retry
// fixes it, and a service manager should not restart into it.
func ExitCode(stderr io.Writer, name string, err error) int {
	if err == nil {
		return ExitOK
	}
	var ce *Error
	code := ExitFailed
	if errors.As(err, &ce) {
		code = ce.Code
		if errors.Is(ce.Err, errSilent) {
			return code
		}
	}
	if errors.Is(err, secfile.ErrExposed) {
		code = ExitUsage
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return code
}

// ReadInput reads a file, or standard input for "-", refusing more than
// limit bytes (it reads limit+1 so callers can tell "too large" apart).
func ReadInput(env *Env, path string, limit int64) ([]byte, error) {
	var r io.Reader = env.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	return io.ReadAll(io.LimitReader(r, limit+1))
}
