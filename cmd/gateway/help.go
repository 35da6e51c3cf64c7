package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// A command is one subcommand as the help shows it. The flags themselves
// are not here: each command defines its own FlagSet, and its help prints
// that FlagSet's defaults, so a new flag cannot be missing from the help.
type command struct {
	name     string
	synopsis string   // what follows "gateway NAME" in its usage line
	summary  string   // its line in the command list
	about    string   // a paragraph for `gateway NAME --help`
	examples []string // at least one: a new user copies an example first
}

// commands are listed in this order: the one that runs the gateway first,
// then the ones an operator reaches for around it.
var commands = []command{
	{
		name:     "serve",
		synopsis: "[--config FILE]",
		summary:  "run the gateway",
		about: "Run the gateway on the configuration FILE. SIGTERM or SIGINT drains and stops it\n" +
			"(a second one skips the rest of the drain delay); SIGHUP reloads FILE.\n" +
			"serve is also what runs when the first argument is a flag: gateway --config FILE.",
		examples: []string{"gateway serve --config gateway.yaml"},
	},
	{
		name:     "check",
		synopsis: "[--config FILE]",
		summary:  "validate a config file and list every problem (file:line: key path)",
		about: "Load FILE as serve would (with the same environment for ${VAR}s) and list every\n" +
			"problem at once, each with its file, line and key path; exit 1 if there is any.",
		examples: []string{"gateway check --config deploy/examples/auth0.yaml"},
	},
	{
		name:     "token",
		synopsis: "--client ID | --user ID [--scope S] [--ttl D] [--audience A] [--config FILE]",
		summary:  "mint a token from the dev issuer (dev_issuer.enabled)",
		about: "Mint a signed JWT with the dev issuer of FILE, for trying routes locally: a\n" +
			"client-credentials token for a dev_issuer.clients id, or a user token for any subject.",
		examples: []string{
			"TOKEN=$(gateway token --client svc-billing)",
			"gateway token --user 'auth0|alice' --scope 'read:invoices' --ttl 10m",
		},
	},
	{
		name:     "health",
		synopsis: "[--addr HOST:PORT] [--ready] [--timeout D]",
		summary:  "probe the admin listener; exit 0 when healthy (for Docker HEALTHCHECK)",
		about: "GET /healthz (alive) or, with --ready, /readyz (ready for traffic) on the admin\n" +
			"listener, and exit 0 only on 200: a probe for runtimes that run a command, since\n" +
			"the image has no shell or curl.",
		examples: []string{"gateway health --addr 127.0.0.1:9090 --ready"},
	},
	{
		name:     "invalidate",
		synopsis: "--client ID | --user ID | --all [--issuer URL] [--admin URL] [--token T] [--timeout D]",
		summary:  "forget a cached caller on every replica (admin API)",
		about: "Ask a running gateway's admin API to drop a caller's cached metadata (or all of\n" +
			"it), on every replica sharing its Redis. The admin token is invalidation.admin_token.",
		examples: []string{
			"GATEWAY_ADMIN_TOKEN=... gateway invalidate --client svc-billing",
			"gateway invalidate --all --admin http://10.0.0.7:9090 --token \"$ADMIN_TOKEN\"",
		},
	},
	{
		name:     "version",
		summary:  "print the version",
		about:    "Print the version the binary was built as.",
		examples: []string{"gateway version"},
	},
	{
		name:     "help",
		synopsis: "[COMMAND]",
		summary:  "list the commands, or show one command's flags and examples",
		about:    "Without COMMAND, list the commands; with one, show its flags and examples\n(as gateway COMMAND --help does).",
		examples: []string{"gateway help check"},
	},
}

// exitCodes is in the command list, and exitCodesLine in each command's
// help: scripts and probes branch on them.
const (
	exitCodes = `Exit codes:
  0  success
  1  runtime or configuration error (invalid config, failed probe, refused request)
  2  usage error (unknown command or flag, missing or conflicting arguments)
`
	exitCodesLine = "Exit codes: 0 success, 1 runtime or configuration error, 2 usage error.\n"
)

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// commandList is `gateway help`: every command with one line.
func commandList(w io.Writer) {
	var b strings.Builder
	b.WriteString("gateway is an API gateway: it verifies bearer JWTs, resolves the caller's\n" +
		"metadata and forwards trusted X-Client-* headers upstream.\n\n" +
		"Usage:\n  gateway COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-11s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'gateway COMMAND --help' (or 'gateway help COMMAND') for its flags and examples.\n\n")
	b.WriteString(exitCodes)
	fmt.Fprint(w, b.String())
}

// usageLine is a command's one-line synopsis.
func usageLine(c command) string {
	return strings.TrimSpace("gateway " + c.name + " " + c.synopsis)
}

// commandHelp is `gateway NAME --help`: the usage line, what the command
// does, its flags (fs's, nil for none) and examples.
func commandHelp(w io.Writer, name string, fs *flag.FlagSet) {
	c, _ := lookup(name)
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", usageLine(c), c.about)
	if fs != nil && hasFlags(fs) {
		fmt.Fprint(w, "\nFlags:\n")
		out := fs.Output()
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(out)
	}
	fmt.Fprint(w, "\nExample:\n")
	for _, e := range c.examples {
		fmt.Fprintf(w, "  %s\n", e)
	}
	fmt.Fprint(w, "\n"+exitCodesLine)
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parseFlags parses a command's flags with its help on -h or --help,
// written to stdout (asked for, so exit 0: flag.ErrHelp). A bad flag or a
// stray argument is a usageError (exit 2). The flag package prints nothing
// itself: it would write the help and its errors to the same writer.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		commandHelp(stdout, fs.Name(), fs)
		return err
	case err != nil:
		return &usageError{fs.Name() + ": " + err.Error()}
	case fs.NArg() > 0:
		return &usageError{fmt.Sprintf("%s: unexpected argument %q (every option is a flag)", fs.Name(), fs.Arg(0))}
	}
	return nil
}

// usageHint follows a usage error on stderr: the command's usage line and
// where its flags are explained, as `go build -bogus` does.
func usageHint(w io.Writer, name string) {
	c, ok := lookup(name)
	if !ok {
		return
	}
	fmt.Fprintf(w, "usage: %s\nRun 'gateway %s --help' for its flags and examples.\n", usageLine(c), name)
}
