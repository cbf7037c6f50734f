package rollout

import (
	"testing"
	"time"
)

// FuzzDecodeRollout: rollout state read back from the KV bucket after a
// restart never panics, and what decodes is valid and re-encodes to
// something that decodes to the same state.
func FuzzDecodeRollout(f *testing.F) {
	r, err := New("m-2-x", Spec{Model: "m", From: "1", To: "2", Steps: []float64{10, 100}, Interval: time.Second, MaxErrorRate: 0.01}, time.Unix(1700000000, 0).UTC())
	if err != nil {
		f.Fatal(err)
	}
	b, err := r.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"id":"x","spec":{"model":"m","to":"2","steps":[100],"interval":"1s"},"state":"running"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode(data)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Decode returned an invalid rollout: %v", err)
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := Decode(b); err != nil {
			t.Fatalf("re-decode: %v\n%s", err, b)
		}
	})
}
