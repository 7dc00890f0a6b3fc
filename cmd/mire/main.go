// Command mire is the operator's tool for a mire event store: it migrates
// the schema, shows streams and events, reports and administers
// projections, and exports and imports the log, without Go code.
//
//	go install github.com/mire-go/mire/cmd/mire@latest
//	mire --help
//
// Commands: migrate [--print], version, streams, show STREAM, tail,
// projections [reset|resume|move-to-watermark|rebuild NAME], export,
// import, completion SHELL.
//
// It connects with --database-url (or DATABASE_URL) to the schema given by
// --schema (default "mire"). Every command takes --json for scripts. Exit
// codes: 0 success, 1 error, 2 usage error (a bad flag or argument).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
)

// Exit codes that scripts can rely on.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError marks an error in the command line, as opposed to one in
// doing what it asked.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// run runs the command line args and returns the process's exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := app.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	app.close()
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = errors.New("interrupted")
	}
	fmt.Fprintf(stderr, "mire: %v\n", err)
	// cobra's own flag and argument errors come back untyped, but before
	// any command ran (app.ran is set after flags and arguments passed).
	var usage usageError
	if errors.As(err, &usage) || !app.ran {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitError
}
