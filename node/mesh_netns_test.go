package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/petrel-mesh/petrel/models/ort"
	"github.com/petrel-mesh/petrel/node/meshtls"
	"github.com/petrel-mesh/petrel/simulations/netem"
	"github.com/petrel-mesh/petrel/simulations/netns"
)

// TestMeshNetnsLatency runs three `petrel node` processes on three hosts
// (network namespaces) joined by veth pairs:
//
//	a (10.77.1.2) ── x (10.77.1.1 | 10.77.2.1) ── b (10.77.2.2)
//
// a and b serve the same model; x serves nothing and forwards. This
// kernel has no netem qdisc, so the links' delays come from delaying
// relays (simulations/netem) running on x: a advertises its gossip and
// HTTP/3 addresses as relays on x that add 15 ms each way, b as relays
// that add 1 ms. Nothing tells x which peer is nearer: it has to learn it
// from gossip probe round trips (Vivaldi coordinates), and then send the
// requests to b. Then the delays are swapped at run time, and x has to
// notice and send them to a.
func TestMeshNetnsLatency(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Fatalf("this test needs Linux network namespaces (root, iproute2): %v", err)
	}
	lib, err := ort.FindLibrary("")
	if err != nil {
		t.Fatalf("the node tests need the ONNX Runtime shared library: %v", err)
	}
	bin := buildPetrel(t)
	lab, err := netns.New("petrelmesh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	host := func(name string) *netns.Host {
		h, err := lab.AddHost(name)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	x, a, b := host("x"), host("a"), host("b")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(lab.Link(x, a, "10.77.1.1/30", "10.77.1.2/30"))
	must(lab.Link(x, b, "10.77.2.1/30", "10.77.2.2/30"))
	must(x.EnableForwarding())
	must(a.AddRoute("10.77.2.0/30", "10.77.1.1"))
	must(b.AddRoute("10.77.1.0/30", "10.77.2.1"))

	// Credentials and models (the file system is shared by the hosts).
	caDir := t.TempDir()
	if _, err := meshtls.NewDevCA(caDir, time.Hour); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(t.TempDir(), "gossip.keys")
	must(os.WriteFile(keys, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600))
	r := newRepo(t)
	r.smallMLP("m", 51, "")
	empty := newRepo(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	start := func(h *netns.Host, name string, args ...string) {
		cmd := h.Command(ctx, bin, args...)
		cmd.Env = append(os.Environ(), ort.EnvLibrary+"="+lib)
		logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		must(cmd.Start())
		t.Cleanup(func() {
			cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("%s log:\n%s", name, tail(string(b), 3000))
			}
		})
	}

	// The relays on x: gossip (UDP and TCP) and HTTP/3 (UDP) of a and b.
	relays := []string{
		"udp,10.77.1.1:17946,10.77.1.2:7946,15ms", "tcp,10.77.1.1:17946,10.77.1.2:7946,15ms", "udp,10.77.1.1:18000,10.77.1.2:8000,15ms",
		"udp,10.77.2.1:17946,10.77.2.2:7946,1ms", "tcp,10.77.2.1:17946,10.77.2.2:7946,1ms", "udp,10.77.2.1:18000,10.77.2.2:8000,1ms",
	}
	relay := x.Command(ctx, os.Args[0], "-test.run=^TestHelperProcess$")
	relay.Env = append(os.Environ(), "PETREL_TEST_HELPER=relay", "PETREL_RELAYS="+strings.Join(relays, ";"))
	out, err := relay.StdoutPipe()
	must(err)
	relayIn, err := relay.StdinPipe()
	must(err)
	relay.Stderr = os.Stderr
	must(relay.Start())
	t.Cleanup(func() { relay.Process.Kill(); relay.Wait() })
	relayOut := bufio.NewReader(out)
	line, err := relayOut.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("relays: %q %v", line, err)
	}

	common := []string{"--plain-tcp", "--gossip-key-file", keys, "--mesh-tls-dir", caDir,
		"--gossip-profile", "local", "--gossip-probe-interval", "100ms", "--routing-policy", "nearest", "--lazy-load=false"}
	start(x, "x", append([]string{"node", "--id", "x", "--listen", "127.0.0.1:8000", "--model-repo", empty.dir,
		"--gossip-bind", "0.0.0.0:7946", "--gossip-advertise", "10.77.1.1:7946"}, common...)...)
	for _, p := range []struct {
		h               *netns.Host
		id, addr, relay string
	}{{a, "a", "10.77.1.2", "10.77.1.1"}, {b, "b", "10.77.2.2", "10.77.2.1"}} {
		start(p.h, p.id, append([]string{"node", "--id", p.id, "--listen", p.addr + ":8000", "--model-repo", r.dir,
			"--advertise-addr", p.relay + ":18000", "--gossip-bind", p.addr + ":7946", "--gossip-advertise", p.relay + ":17946",
			"--join", "10.77.1.1:7946"}, common...)...)
	}

	// The client runs on x, next to the node it asks.
	phase := func(near, far string) {
		t.Helper()
		client := x.Command(ctx, os.Args[0], "-test.run=^TestHelperProcess$")
		client.Env = append(os.Environ(), "PETREL_TEST_HELPER=client", "PETREL_CLIENT_URL=http://127.0.0.1:8000", "PETREL_CLIENT_N=100")
		client.Stderr = os.Stderr
		res, err := client.Output()
		if err != nil {
			t.Fatalf("client: %v\n%s", err, res)
		}
		var got clientResult
		if err := json.Unmarshal(res, &got); err != nil {
			t.Fatalf("client output %q: %v", res, err)
		}
		t.Logf("%s near, %s far: served by %v; x's view of its peers: %s", near, far, got.Served, got.Peers)
		if got.Served[near] < 90 {
			t.Errorf("%s (1 ms away) served %d of 100 requests, %s (15 ms away) %d: routing did not prefer the nearer peer", near, got.Served[near], far, got.Served[far])
		}
		var peers struct {
			Peers []struct {
				ID        string  `json:"id"`
				RTTMs     float64 `json:"rtt_ms"`
				RTTSource string  `json:"rtt_source"`
			} `json:"peers"`
		}
		if err := json.Unmarshal(got.Peers, &peers); err != nil {
			t.Fatal(err)
		}
		rtt := map[string]float64{}
		for _, p := range peers.Peers {
			rtt[p.ID] = p.RTTMs
			if p.RTTSource != "coordinates" {
				t.Errorf("x estimates %s's RTT from %s, want coordinates", p.ID, p.RTTSource)
			}
		}
		// The far peer's probes pay 15 ms at least once per round trip, the
		// near one's 1 ms.
		if rtt[far] < 10 || rtt[near] > 8 || rtt[far] < 2*rtt[near] {
			t.Errorf("x's RTT estimates: %s %.1f ms, %s %.1f ms; want the far one ≥ 10 ms, the near one ≤ 8 ms", far, rtt[far], near, rtt[near])
		}
	}
	phase("b", "a")
	// Swap the delays: a's links become fast, b's slow. Routing has to
	// learn the change from the probes.
	for i := range 3 {
		fmt.Fprintf(relayIn, "set %d 1ms\nset %d 15ms\n", i, i+3)
	}
	for range 6 {
		if l, err := relayOut.ReadString('\n'); err != nil || strings.TrimSpace(l) != "ok" {
			t.Fatalf("relay reconfiguration: %q %v", l, err)
		}
	}
	phase("a", "b")
}

type clientResult struct {
	Served map[string]int  `json:"served"`
	Peers  json.RawMessage `json:"peers"`
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// TestHelperProcess is not a test: the namespace test runs the test
// binary inside a namespace with PETREL_TEST_HELPER set, as a relay host
// or a client.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv("PETREL_TEST_HELPER") {
	case "":
		return
	case "relay":
		os.Exit(helperRelays())
	case "client":
		os.Exit(helperClient())
	}
	os.Exit(2)
}

func helperRelays() int {
	type link interface{ SetConfig(netem.LinkConfig) error }
	var links []link
	for spec := range strings.SplitSeq(os.Getenv("PETREL_RELAYS"), ";") {
		f := strings.Split(spec, ",")
		if len(f) != 4 {
			fmt.Fprintf(os.Stderr, "bad relay %q\n", spec)
			return 2
		}
		d, err := time.ParseDuration(f[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		cfg := netem.LinkConfig{Delay: d}
		var l link
		if f[0] == "udp" {
			l, err = netem.NewUDPRelay(f[1], f[2], cfg)
		} else {
			l, err = netem.NewTCPRelay(f[1], f[2], cfg)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		links = append(links, l)
	}
	fmt.Println("ready")
	// Commands on stdin: "set <relay index> <delay>".
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var i int
		var d string
		if _, err := fmt.Sscanf(sc.Text(), "set %d %s", &i, &d); err != nil || i < 0 || i >= len(links) {
			fmt.Fprintf(os.Stderr, "bad command %q\n", sc.Text())
			continue
		}
		dd, err := time.ParseDuration(d)
		if err == nil {
			err = links[i].SetConfig(netem.LinkConfig{Delay: dd})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			continue
		}
		fmt.Println("ok")
	}
	select {}
}

// helperClient waits until the node answers for the model, gives the
// gossip a few seconds of probes to learn the latencies, then sends N
// requests one at a time and prints who served them and the node's view
// of its peers.
func helperClient() int {
	url := os.Getenv("PETREL_CLIENT_URL")
	n, _ := strconv.Atoi(os.Getenv("PETREL_CLIENT_N"))
	body := `{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[` + strings.TrimSuffix(strings.Repeat("0.25,", 64), ",") + `]}]}`
	c := &http.Client{Timeout: 10 * time.Second}
	send := func() (string, error) {
		resp, err := c.Post(url+"/v2/models/m/infer", "application/json", strings.NewReader(body))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return resp.Header.Get("Petrel-Served-By"), nil
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := send(); err == nil {
			break
		} else if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "the node never answered:", err)
			return 1
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(8 * time.Second) // ~40 probe rounds for the coordinates
	served := map[string]int{}
	for range n {
		id, err := send()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		served[id]++
	}
	resp, err := c.Get(url + "/v1/mesh/peers")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	peers, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	json.NewEncoder(os.Stdout).Encode(clientResult{Served: served, Peers: peers})
	return 0
}
