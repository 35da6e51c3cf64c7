package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/metagate/gateway/internal/benche2e"
)

// build compiles the gateway and the harness's programs into dir, with the
// flags `make build` uses.
func build(env *benche2e.Env, goBin, dir string) {
	const mod = "github.com/metagate/gateway/"
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", dir+string(filepath.Separator),
		mod+"cmd/gateway", mod+"internal/benche2e/cmd/bareproxy", mod+"internal/benche2e/cmd/upstream", mod+"internal/benche2e/cmd/tenant")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		env.Fatalf("go build: %v\n%s", err, out)
	}
}

// proc is a child process: the upstream, the bare proxy, the tenant
// emulator or the gateway.
type proc struct {
	name   string
	URL    string
	cmd    *exec.Cmd
	logf   string
	exited chan struct{}
}

// start runs bin with args, its stderr in a log file next to it. With
// urlOnStdout the program prints its URL on its first line of stdout.
func start(env *benche2e.Env, bin string, urlOnStdout bool, args ...string) *proc {
	p := &proc{name: filepath.Base(bin), cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.logf = bin + ".log"
	logFile, err := os.OpenFile(p.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		env.Fatalf("%v", err)
	}
	p.cmd.Stderr = logFile
	p.cmd.SysProcAttr = sysProcAttr()
	stdin, err := p.cmd.StdinPipe() // the tenant emulator stops when it closes
	if err != nil {
		env.Fatalf("%v", err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		env.Fatalf("%v", err)
	}
	if err := p.cmd.Start(); err != nil {
		env.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		_ = logFile.Close()
		close(p.exited)
	}()
	env.Cleanup(func() { _ = stdin.Close(); p.stop() })
	sc := bufio.NewScanner(stdout)
	if urlOnStdout {
		if !sc.Scan() {
			<-p.exited
			env.Fatalf("%s printed no URL; its log:\n%s", p.name, p.logTail())
		}
		p.URL = strings.TrimSpace(sc.Text())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits, then kills after 10s. Stopping a stopped
// process does nothing.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logf)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitReady polls url until it answers 200, the process exits or a minute
// passes.
func (p *proc) waitReady(env *benche2e.Env, url string) {
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.exited:
			env.Fatalf("%s exited before it was ready; its log:\n%s", p.name, p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			env.Fatalf("%s not ready after a minute (%s: %v); its log:\n%s", p.name, url, err, p.logTail())
		}
	}
}

// freeAddr is a loopback address that was free a moment ago.
func freeAddr(env *benche2e.Env) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		env.Fatalf("%v", err)
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// cpuTicks reads the process's utime+stime, failing the run if it cannot.
func cpuTicks(env *benche2e.Env, pid int) uint64 {
	t, err := benche2e.CPUTicks(pid)
	if err != nil {
		env.Fatalf("read CPU time of pid %d: %v", pid, err)
	}
	return t
}

func must(env *benche2e.Env, err error, format string, args ...any) {
	if err != nil {
		env.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
