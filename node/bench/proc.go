package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
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

	"github.com/petrel-mesh/petrel/node/client"
)

// process is a child process of the suite: a node or a baseline server.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string // file with its stdout and stderr
	addr string // host:port it serves on
	done chan struct{}
	err  error // Wait's result, valid once done is closed
}

// startProcess runs exe with args, output to logDir/name.log, and env
// added to the environment. The process gets SIGTERM when stopped (and,
// on Linux, when the suite dies).
func startProcess(name, exe string, args []string, env []string, logDir, addr string) (*process, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, addr: addr, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// pid is the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// stop asks the process to terminate and waits for it, killing it after
// grace. Safe to call more than once.
func (p *process) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail returns the last lines of the process's output, for errors.
func (p *process) logTail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// waitReady polls GET paths on the process until each answers 200.
func (p *process) waitReady(ctx context.Context, c *client.Client, timeout time.Duration, paths ...string) error {
	deadline := time.Now().Add(timeout)
	for _, path := range paths {
		for {
			if p.exited() {
				return fmt.Errorf("%s exited before it was ready (%v); its log %s ends:\n%s", p.name, p.err, p.log, p.logTail())
			}
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			res, err := c.Get(rctx, path)
			cancel()
			if err == nil && res.Status == http.StatusOK {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Now().After(deadline) {
				detail := fmt.Sprint(err)
				if err == nil {
					detail = fmt.Sprintf("status %d: %s", res.Status, trim(res.Body))
				}
				return fmt.Errorf("%s not ready after %v (GET %s: %s); its log %s ends:\n%s", p.name, timeout, path, detail, p.log, p.logTail())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// Memory is a process's memory use as /proc/<pid>/status reports it.
type Memory struct {
	RSS  int64 // VmRSS, bytes
	Peak int64 // VmHWM (peak RSS), bytes
}

// ReadMemory reads VmRSS and VmHWM of a process (Linux).
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	return parseStatus(b)
}

// parseStatus extracts VmRSS and VmHWM from the text of /proc/<pid>/status.
func parseStatus(b []byte) (Memory, error) {
	var m Memory
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("%s: unexpected value %q", key, val)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("%s: %w", key, err)
		}
		if key == "VmRSS" {
			m.RSS = kb << 10
		} else {
			m.Peak = kb << 10
		}
		found++
	}
	if found < 2 {
		return m, errors.New("no VmRSS and VmHWM in process status")
	}
	return m, nil
}

// freePort returns a port on host that is free for TCP and UDP at the
// moment of asking (the node serves HTTP/3 on the TCP port's number).
func freePort(host string) (string, error) {
	for range 20 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return "", err
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, port))
		ln.Close()
		if err == nil {
			pc.Close()
			return port, nil
		}
	}
	return "", errors.New("no free TCP+UDP port found")
}
