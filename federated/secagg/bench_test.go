package secagg

import (
	"flag"
	"fmt"
	"testing"
	"time"
)

var (
	benchClients = flag.Int("secagg.clients", 20, "clients in BenchmarkSecAgg100x100k (100 for the full size)")
	benchLen     = flag.Int("secagg.len", 10_000, "vector length in BenchmarkSecAgg100x100k (100000 for the full size)")
)

// BenchmarkSecAgg100x100k runs whole aggregations with 10% of the clients
// dropping out after round 1 (the costly case: their keys are rebuilt and
// their pairwise masks removed), every message going through its binary
// encoding. It reports, besides the time of the whole (sequential)
// simulation:
//
//	client-ms      time one surviving client spends in all four rounds
//	client-sent-B  bytes one surviving client sends
//	server-ms      time the server spends (decoding, handling, routing, unmasking)
//	server-sent-B  bytes the server sends in all
//
// By default it runs 20 clients × 10k coordinates so that -bench . stays
// quick; the full size is
//
//	go test -run '^$' -bench SecAgg100x100k -benchtime 1x -secagg.clients 100 -secagg.len 100000 ./federated/secagg
func BenchmarkSecAgg100x100k(b *testing.B) {
	n, l := *benchClients, *benchLen
	cfg := Config{N: n, Threshold: n/2 + 1, VectorLen: l, Clip: 1, Session: []byte("bench")}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	inputs := testInputs(1, n, l)
	dropped := func(id uint32) bool { return id%10 == 0 }
	b.Run(fmt.Sprintf("clients=%d/len=%d", n, l), func(b *testing.B) {
		var clientTime, serverTime time.Duration
		var clientBytes, serverBytes, survivors int
		iter := uint64(0)
		for b.Loop() {
			iter++
			ct, st, cb, sb, s := benchAggregation(b, cfg, inputs, dropped, iter)
			clientTime += ct
			serverTime += st
			clientBytes += cb
			serverBytes += sb
			survivors += s
		}
		b.ReportMetric(clientTime.Seconds()*1000/float64(survivors), "client-ms")
		b.ReportMetric(float64(clientBytes)/float64(survivors), "client-sent-B")
		b.ReportMetric(serverTime.Seconds()*1000/float64(iter), "server-ms")
		b.ReportMetric(float64(serverBytes)/float64(iter), "server-sent-B")
	})
}

// benchAggregation runs one aggregation and returns the time and bytes of
// the surviving clients (summed), the server's time and bytes, and the
// number of surviving clients.
func benchAggregation(b *testing.B, cfg Config, inputs [][]float32, dropped func(uint32) bool, seed uint64) (ct, st time.Duration, cb, sb, survivors int) {
	srv, err := NewServer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	clients := make([]*Client, cfg.N)
	for i := range clients {
		if clients[i], err = NewClient(uint32(i+1), cfg, testRNG(seed, uint32(i+1))); err != nil {
			b.Fatal(err)
		}
	}
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	// client runs f for client id, timing it and counting the bytes.
	client := func(id uint32, f func() ([]byte, error)) []byte {
		start := time.Now()
		out, err := f()
		must(err)
		if !dropped(id) {
			ct += time.Since(start)
			cb += len(out)
		}
		return out
	}
	server := func(f func() error) {
		start := time.Now()
		must(f())
		st += time.Since(start)
	}
	encodeAll := func(ms map[uint32][]byte) func(uint32, Message) error {
		return func(id uint32, m Message) error {
			enc, err := m.MarshalBinary()
			ms[id] = enc
			sb += len(enc)
			return err
		}
	}

	// Round 0.
	for _, c := range clients {
		wire := client(c.ID(), func() ([]byte, error) {
			m, err := c.AdvertiseKeys()
			if err != nil {
				return nil, err
			}
			return m.MarshalBinary()
		})
		server(func() error {
			m, err := DecodeAdvertiseKeys(wire)
			if err != nil {
				return err
			}
			return srv.HandleAdvertiseKeys(m)
		})
	}
	keys := map[uint32][]byte{}
	server(func() error {
		out, err := srv.EndAdvertiseKeys()
		for id, m := range out {
			must(encodeAll(keys)(id, m))
		}
		return err
	})
	// Round 1.
	for _, c := range clients {
		wire := client(c.ID(), func() ([]byte, error) {
			in, err := DecodePublicKeys(keys[c.ID()])
			if err != nil {
				return nil, err
			}
			m, err := c.ShareKeys(in)
			if err != nil {
				return nil, err
			}
			return m.MarshalBinary()
		})
		server(func() error {
			m, err := DecodeShareKeys(wire)
			if err != nil {
				return err
			}
			return srv.HandleShareKeys(m)
		})
	}
	cts := map[uint32][]byte{}
	server(func() error {
		out, err := srv.EndShareKeys()
		for id, m := range out {
			must(encodeAll(cts)(id, m))
		}
		return err
	})
	// Round 2: the dropped clients fall silent.
	for _, c := range clients {
		if dropped(c.ID()) {
			continue
		}
		wire := client(c.ID(), func() ([]byte, error) {
			in, err := DecodeCiphertexts(cts[c.ID()])
			if err != nil {
				return nil, err
			}
			m, err := c.MaskedInput(in, inputs[c.ID()-1])
			if err != nil {
				return nil, err
			}
			return m.MarshalBinary()
		})
		server(func() error {
			m, err := DecodeMaskedInput(wire)
			if err != nil {
				return err
			}
			return srv.HandleMaskedInput(m)
		})
	}
	reqs := map[uint32][]byte{}
	server(func() error {
		out, err := srv.EndMaskedInput()
		for id, m := range out {
			must(encodeAll(reqs)(id, m))
		}
		return err
	})
	// Round 3.
	for _, c := range clients {
		if dropped(c.ID()) {
			continue
		}
		survivors++
		wire := client(c.ID(), func() ([]byte, error) {
			in, err := DecodeUnmaskRequest(reqs[c.ID()])
			if err != nil {
				return nil, err
			}
			m, err := c.Unmask(in)
			if err != nil {
				return nil, err
			}
			return m.MarshalBinary()
		})
		server(func() error {
			m, err := DecodeUnmaskResponse(wire)
			if err != nil {
				return err
			}
			return srv.HandleUnmask(m)
		})
	}
	var res *Result
	server(func() error {
		var err error
		res, err = srv.Finish()
		return err
	})
	if res.Count != survivors {
		b.Fatalf("result counts %d clients, want %d", res.Count, survivors)
	}
	return ct, st, cb, sb, survivors
}
