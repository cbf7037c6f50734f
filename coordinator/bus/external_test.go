package bus

import (
	"bytes"
	"errors"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/petrel-mesh/petrel/internal/testproc"
)

// TestExternalServer runs the bus against a real nats-server process, as
// a node or coordinator pointed at an existing NATS would.
func TestExternalServer(t *testing.T) {
	bin := testproc.NATSServer(t)
	port := freePort(t)
	var out testproc.Buffer
	cmd := exec.Command(bin, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	var nc *nats.Conn
	deadline := time.Now().Add(testTimeout)
	for nc == nil {
		select {
		case err := <-exited:
			t.Fatalf("nats-server exited early (%v):\n%s", err, out.String())
		default:
		}
		c, err := Connect(ConnOptions{URL: url, Name: "external-test"})
		if err == nil {
			nc = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server not accepting connections on %s: %v\n%s", url, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer nc.Close()

	ctx := testCtx(t)
	b, err := Provision(ctx, nc, Names{}, ProvisionOptions{})
	if err != nil {
		t.Fatalf("Provision: %v\n%s", err, out.String())
	}
	if _, err := Provision(ctx, nc, Names{}, ProvisionOptions{}); err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	if _, err := Open(ctx, nc, Names{}); err != nil {
		t.Fatalf("Open: %v", err)
	}

	data := bytes.Repeat([]byte{1, 2, 3, 4}, 100000)
	digest := sha(data)
	if n, err := b.PutArtifact(ctx, digest, bytes.NewReader(data)); err != nil || n != int64(len(data)) {
		t.Fatalf("PutArtifact = %d, %v", n, err)
	}
	got, err := b.GetArtifact(ctx, digest, 1<<20)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetArtifact: %d bytes, %v", len(got), err)
	}

	d := validDesired()
	rev, err := UpdateJSON(ctx, b.Desired, d.Model, &d, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UpdateJSON(ctx, b.Desired, d.Model, &d, 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	var back Desired
	if r, err := GetJSON(ctx, b.Desired, d.Model, &back); err != nil || r != rev || back.Model != d.Model {
		t.Fatalf("GetJSON = %d %+v, %v", r, back, err)
	}

	if err := PublishAudit(ctx, b.JS, b.Names, AuditEvent{Kind: "push", Actor: "external", Model: d.Model}); err != nil {
		t.Fatal(err)
	}
	evs, err := ReadAudit(ctx, b.JS, b.Names, AuditFilter{Kind: "push"})
	if err != nil || len(evs) != 1 || evs[0].Actor != "external" || evs[0].Seq == 0 {
		t.Fatalf("ReadAudit = %+v, %v", evs, err)
	}
}
