// Command gateway runs the API gateway: it verifies bearer JWTs, resolves
// the caller's metadata and forwards trusted X-Client-* headers upstream.
//
//	gateway serve      [--config FILE]   run the gateway
//	gateway check      [--config FILE]   validate the config, list every problem
//	gateway token      --client ID | --user ID [--scope S] [--ttl D] [--config FILE]
//	gateway health     [--addr HOST:PORT] [--ready]
//	gateway invalidate --client ID | --user ID | --all [--admin URL] [--token T]
//	gateway version
//	gateway help       [COMMAND]
//
// Arguments that start with a flag (gateway --config FILE) still mean
// serve. Exit codes: 0 success, 1 runtime or configuration error, 2 usage
// error. The help texts are in help.go.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/metagate/gateway/internal/app"
	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/devissuer"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const defaultConfig = "gateway.yaml"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code, so tests can
// drive every subcommand.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		// The list, as a usage error: a supervisor that still starts a
		// bare `gateway` to serve ./gateway.yaml (what it once meant)
		// then sees the process fail instead of exit cleanly.
		commandList(stderr)
		fmt.Fprintln(stderr, "\ngateway: no command given; to run the gateway: gateway serve --config FILE")
		return 2
	}
	cmd := args[0]
	switch {
	case cmd == "-h" || cmd == "-help" || cmd == "--help":
		cmd, args = "help", nil
	case cmd == "-version" || cmd == "--version":
		cmd, args = "version", nil
	case strings.HasPrefix(cmd, "-"):
		// gateway --config FILE: serve was the default command, and
		// scripts written then still work.
		cmd = "serve"
	default:
		args = args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args, stdout, stderr)
	case "check":
		err = check(args, stdout)
	case "token":
		err = token(args, stdout)
	case "health":
		err = health(args, stdout)
	case "invalidate":
		err = invalidate(args, stdout)
	case "version":
		err = versionCmd(args, stdout)
	case "help":
		return help(args, stdout, stderr)
	default:
		unknownCommand(stderr, cmd)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "gateway:", err)
		var usageErr *usageError
		if errors.As(err, &usageErr) {
			usageHint(stderr, cmd)
			return 2
		}
		return 1
	}
	return 0
}

// usageError is a command line that cannot run as given (exit 2, with the
// command's usage line), as opposed to one that ran and failed (exit 1).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func unknownCommand(stderr io.Writer, name string) {
	fmt.Fprintf(stderr, "gateway: unknown command %q\n\n", name)
	commandList(stderr)
}

// help is `gateway help [COMMAND]`. A command's help is the one its own
// --help prints: run parses its flags, so the help cannot leave one out.
func help(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		commandList(stdout)
		return 0
	case len(args) > 1:
		fmt.Fprintf(stderr, "gateway: help: give one command, not %d\n", len(args))
		usageHint(stderr, "help")
		return 2
	case args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help":
		commandHelp(stdout, "help", nil)
		return 0
	}
	if _, ok := lookup(args[0]); !ok {
		unknownCommand(stderr, args[0])
		return 2
	}
	return run([]string{args[0], "--help"}, stdout, stderr)
}

func versionCmd(args []string, stdout io.Writer) error {
	if err := parseFlags(flag.NewFlagSet("version", flag.ContinueOnError), args, stdout); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "gateway", version)
	return nil
}

// configFlags is the FlagSet of a command that reads the config file.
func configFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	file := fs.String("config", defaultConfig, "configuration file")
	return fs, file
}

func load(file string) (*config.Config, error) {
	return config.Load(file, os.LookupEnv)
}

func check(args []string, stdout io.Writer) error {
	fs, file := configFlags("check")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if _, err := load(*file); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: configuration is valid\n", *file)
	return nil
}

func token(args []string, stdout io.Writer) error {
	fs, file := configFlags("token")
	client := fs.String("client", "", "mint a client-credentials token for this client id")
	user := fs.String("user", "", "mint a user token for this subject")
	scope := fs.String("scope", "", "space-separated scopes (default: the client's scopes from dev_issuer.clients)")
	ttl := fs.Duration("ttl", 0, "token lifetime (default: dev_issuer.token_ttl)")
	aud := fs.String("audience", "", "audience (default: dev_issuer.audience)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if (*client == "") == (*user == "") {
		return &usageError{"token: give exactly one of --client ID or --user ID"}
	}
	cfg, err := load(*file)
	if err != nil {
		return err
	}
	d := cfg.DevIssuer
	if !d.Enabled {
		return fmt.Errorf("%s: dev_issuer.enabled is false: there is no dev issuer to mint tokens with", *file)
	}
	key, err := devissuer.LoadOrCreateKey(d.KeyFile)
	if err != nil {
		return err
	}
	clients := make([]devissuer.Client, len(d.Clients))
	for i, c := range d.Clients {
		clients[i] = devissuer.Client{ID: c.ID, Scopes: c.Scopes}
	}
	is := devissuer.New(devissuer.Options{Issuer: d.Issuer, Audience: d.Audience, TTL: d.TokenTTL.D(), Key: key, Clients: clients})
	tok, err := is.Mint(devissuer.TokenRequest{ClientID: *client, UserID: *user, Scopes: strings.Fields(*scope), Audience: *aud, TTL: *ttl})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// health is a probe for container runtimes that run a command (Docker's
// HEALTHCHECK): the distroless image has no shell or curl.
func health(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9090", "the admin listener (server.admin_listen)")
	ready := fs.Bool("ready", false, "probe /readyz (ready to take traffic) instead of /healthz (alive)")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	path := "/healthz"
	if *ready {
		path = "/readyz"
	}
	c := &http.Client{Timeout: *timeout}
	resp, err := c.Get("http://" + *addr + path)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %d: %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	fmt.Fprint(stdout, string(body))
	return nil
}

func serve(args []string, stdout, stderr io.Writer) (err error) {
	fs, file := configFlags("serve")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	cfg, err := load(*file)
	if err != nil {
		return err
	}
	logs, err := newLogs(cfg.Log, stderr)
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: after Run has shut the servers
	// down, no request can log any more.
	defer func() {
		if cerr := logs.close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	log := logs.log
	// SIGTERM or SIGINT drains and shuts down; a second one skips the rest
	// of the drain delay. SIGHUP reloads the config file.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := app.New(ctx, cfg, app.Options{Logger: log, AccessLog: logs.access, TuneGC: true, LookupEnv: os.LookupEnv, Version: version})
	if err != nil {
		return err
	}
	// The signal loop never blocks on a reload (one waiting for a new
	// issuer's JWKS can take seconds), so a SIGTERM during it is read at
	// once; Shutdown then cancels the reload. SIGHUPs that arrive while a
	// reload runs fold into one more. Both goroutines end with serve.
	done := make(chan struct{})
	reloadReq := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-reloadReq:
				_ = a.Reload(ctx) // logged and counted by the app
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case s := <-sigs:
				switch {
				case s == syscall.SIGHUP:
					select {
					case reloadReq <- struct{}{}:
					default: // one is already queued
					}
				case ctx.Err() == nil:
					log.Info("stopping", zap.String("signal", s.String()))
					cancel()
				default:
					a.SkipDrain()
				}
			}
		}
	}()
	log.Info("gateway started", zap.String("config", *file), zap.String("version", version))
	return a.Run(ctx)
}

// The access log's buffer: a busy gateway writes 256 KiB at a time instead
// of once per request, and a quiet one still shows each line within a
// second.
const (
	accessBufferSize    = 256 << 10
	accessFlushInterval = time.Second
)

// logs are the process's loggers, built by hand rather than from a
// zap.Config, which would sample (drop most lines of a message logged
// more than 100 times a second): every request must have its line.
type logs struct {
	// log is the gateway's own messages, written at once so that a crash
	// loses no warning or error.
	log *zap.Logger
	// access is one line per request (nil when log.access is false),
	// written through a buffer; close flushes it.
	access *zap.Logger
	stop   func() error
}

// newLogs builds both loggers on w (stderr). They share one lock on it, so
// a flushed block of access lines and a warning never interleave; the
// buffer only flushes whole lines.
func newLogs(c config.Log, w io.Writer) (*logs, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	var ec zapcore.EncoderConfig
	if c.Format == "console" {
		ec = zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout(time.TimeOnly)
	} else {
		ec = zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
	}
	encoder := func() zapcore.Encoder {
		if c.Format == "console" {
			return zapcore.NewConsoleEncoder(ec)
		}
		return zapcore.NewJSONEncoder(ec)
	}
	out := zapcore.Lock(zapcore.AddSync(w))
	opts := []zap.Option{zap.ErrorOutput(out), zap.AddCaller()}
	if c.Format != "console" {
		opts = append(opts, zap.AddStacktrace(zapcore.ErrorLevel))
	}
	l := &logs{log: zap.New(zapcore.NewCore(encoder(), out, level), opts...), stop: func() error { return nil }}
	if c.Access {
		buf := &zapcore.BufferedWriteSyncer{WS: out, Size: accessBufferSize, FlushInterval: accessFlushInterval}
		// Info whatever log.level says: log.access is the access log's
		// switch. No caller: it would be the same line of the proxy
		// every time, at the cost of a stack walk per request.
		l.access = zap.New(zapcore.NewCore(encoder(), buf, zapcore.InfoLevel), zap.ErrorOutput(out)).Named("access")
		l.stop = buf.Stop
	}
	return l, nil
}

// close flushes the access log's buffer and stops its flush timer; no
// access line may be written after it.
func (l *logs) close() error {
	err := l.stop()
	_ = l.log.Sync() // stderr: fails on terminals and pipes, and has no buffer
	if err != nil {
		return fmt.Errorf("flush the access log: %w", err)
	}
	return nil
}
