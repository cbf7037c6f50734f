package bus

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAudit(t *testing.T) {
	_, _, b := provisioned(t)
	ctx := testCtx(t)
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	events := []AuditEvent{
		{Time: base, Kind: "push", Actor: "alice", Model: "resnet", Version: "1", OK: true},
		{Time: base.Add(1 * time.Minute), Kind: "validate", Actor: "coordinator", Model: "resnet", Version: "1", OK: true},
		{Time: base.Add(2 * time.Minute), Kind: "rollout.start", Actor: "alice", Model: "resnet", Version: "1", OK: true},
		{Time: base.Add(3 * time.Minute), Kind: "rollout.step", Actor: "coordinator", Model: "resnet", Version: "1", OK: true, Fields: map[string]string{"weight": "5"}},
		{Time: base.Add(4 * time.Minute), Kind: "push", Actor: "bob", Model: "bert", Version: "7", OK: true},
		{Time: base.Add(5 * time.Minute), Kind: "rollout.step", Actor: "coordinator", Model: "resnet", Version: "1", OK: true, Fields: map[string]string{"weight": "10"}},
		{Time: base.Add(6 * time.Minute), Kind: "rollback", Actor: "coordinator", Model: "resnet", Version: "1", OK: false, Detail: "error rate 5%"},
	}
	for i, ev := range events {
		if err := PublishAudit(ctx, b.JS, b.Names, ev); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if i == 2 {
			// Garbage on the audit subjects is skipped on read.
			if _, err := b.JS.Publish(ctx, b.Names.AuditSubject("push"), []byte("not json")); err != nil {
				t.Fatal(err)
			}
			if _, err := b.JS.Publish(ctx, b.Names.AuditSubject("push"), []byte(`{"kind":"other","time":"2025-01-01T00:00:00Z"}`)); err != nil {
				t.Fatal(err)
			}
		}
	}

	tests := []struct {
		name   string
		filter AuditFilter
		want   []int // indexes into events, oldest first
	}{
		{"all", AuditFilter{}, []int{0, 1, 2, 3, 4, 5, 6}},
		{"kind", AuditFilter{Kind: "push"}, []int{0, 4}},
		{"dotted kind", AuditFilter{Kind: "rollout.step"}, []int{3, 5}},
		{"kind prefix is not a match", AuditFilter{Kind: "rollout"}, nil},
		{"model", AuditFilter{Model: "bert"}, []int{4}},
		{"actor", AuditFilter{Actor: "alice"}, []int{0, 2}},
		{"actor and model", AuditFilter{Actor: "coordinator", Model: "resnet"}, []int{1, 3, 5, 6}},
		{"since", AuditFilter{Since: base.Add(4 * time.Minute)}, []int{4, 5, 6}},
		{"since, kind", AuditFilter{Since: base.Add(4 * time.Minute), Kind: "rollout.step"}, []int{5}},
		{"limit keeps newest", AuditFilter{Limit: 2}, []int{5, 6}},
		{"limit 1 with filter", AuditFilter{Limit: 1, Actor: "alice"}, []int{2}},
		{"no match", AuditFilter{Model: "nope"}, nil},
		{"future since", AuditFilter{Since: base.Add(time.Hour)}, nil},
	}
	var logs logBuffer
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.filter.Logger = logs.logger()
			got, err := ReadAudit(ctx, b.JS, b.Names, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events %+v, want %d", len(got), got, len(tt.want))
			}
			var lastSeq uint64
			for i, ev := range got {
				w := events[tt.want[i]]
				if ev.Kind != w.Kind || !ev.Time.Equal(w.Time) || ev.Actor != w.Actor || ev.Model != w.Model || ev.OK != w.OK || ev.Detail != w.Detail {
					t.Errorf("event %d = %+v, want %+v", i, ev, w)
				}
				if ev.Seq <= lastSeq {
					t.Errorf("event %d: seq %d not after %d", i, ev.Seq, lastSeq)
				}
				lastSeq = ev.Seq
			}
		})
	}
	if !strings.Contains(logs.String(), "skipped=2") {
		t.Errorf("skipped messages not reported; logs:\n%s", logs.String())
	}

	// Consumers are cleaned up after reading.
	s, err := b.JS.Stream(ctx, b.Names.AuditStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on the audit stream", info.State.Consumers)
	}
}

func TestAuditManyEvents(t *testing.T) {
	_, _, b := provisioned(t)
	ctx := testCtx(t)
	const n = 600 // more than one fetch batch
	for i := range n {
		if err := PublishAudit(ctx, b.JS, b.Names, AuditEvent{Kind: "rollout.step", Actor: "c", Fields: map[string]string{"i": itoa(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadAudit(ctx, b.JS, b.Names, AuditFilter{Limit: MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n || got[0].Fields["i"] != "0" || got[n-1].Fields["i"] != itoa(n-1) {
		t.Fatalf("got %d events, first %v last %v", len(got), got[0].Fields, got[len(got)-1].Fields)
	}
	got, err = ReadAudit(ctx, b.JS, b.Names, AuditFilter{Limit: 300})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 300 || got[0].Fields["i"] != itoa(n-300) || got[299].Fields["i"] != itoa(n-1) {
		t.Fatalf("limit 300: %d events, first %v", len(got), got[0].Fields)
	}
	if got[0].Time.IsZero() {
		t.Error("PublishAudit did not set the time")
	}
}

func TestAuditErrors(t *testing.T) {
	_, _, b := provisioned(t)
	ctx := testCtx(t)
	for _, ev := range []AuditEvent{{Kind: ""}, {Kind: "a.*"}, {Kind: "a b"}, {Kind: "x", Detail: strings.Repeat("d", maxText+1)}} {
		if err := PublishAudit(ctx, b.JS, b.Names, ev); !errors.Is(err, ErrInvalid) {
			t.Errorf("PublishAudit(%q): %v, want ErrInvalid", ev.Kind, err)
		}
	}
	for _, f := range []AuditFilter{{Limit: -1}, {Limit: MaxAuditLimit + 1}, {Kind: "a.>"}} {
		if _, err := ReadAudit(ctx, b.JS, b.Names, f); err == nil {
			t.Errorf("ReadAudit(%+v) succeeded", f)
		}
	}
	// Empty stream.
	got, err := ReadAudit(ctx, b.JS, b.Names, AuditFilter{})
	if err != nil || len(got) != 0 {
		t.Fatalf("empty stream: %v, %v", got, err)
	}
	// Another prefix was never provisioned: publishing is not acknowledged.
	other := Names{Prefix: "other"}
	if err := PublishAudit(ctx, b.JS, other, AuditEvent{Kind: "push"}); err == nil {
		t.Error("PublishAudit to a missing stream succeeded")
	}
	if _, err := ReadAudit(ctx, b.JS, other, AuditFilter{}); !errors.Is(err, ErrNotProvisioned) {
		t.Errorf("ReadAudit of a missing stream: %v, want ErrNotProvisioned", err)
	}
}
