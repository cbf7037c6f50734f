package models

import (
	"errors"
	"fmt"
	"time"
	"unicode"
)

// Lineage sources: where a model version came from.
const (
	// SourceUpload is a version pushed by hand (CLI or API).
	SourceUpload = "upload"
	// SourceTraining is a version produced by a federated training round.
	SourceTraining = "training"
)

// Lineage limits, so that a manifest stays small enough for the registry.
const (
	maxLineageString = 256
	maxLineageNodes  = 10000
)

// Lineage records how a model version was made: the version it replaces,
// who pushed it and when, and for a trained version the round, nodes and
// sample count that produced it.
type Lineage struct {
	// Parent is the version this one derives from (the global model a
	// training round started from, or the version an upload replaces);
	// empty for the first version of a model.
	Parent string `json:"parent,omitempty"`
	// Source is SourceUpload or SourceTraining.
	Source string `json:"source"`
	// Round is the training round id; required when Source is
	// SourceTraining and not allowed otherwise.
	Round string `json:"round,omitempty"`
	// PushedBy is the identity of the token that pushed the version.
	PushedBy string `json:"pushed_by,omitempty"`
	// PushedAt is when the coordinator accepted the version.
	PushedAt time.Time `json:"pushed_at"`
	// Nodes are the nodes whose updates were aggregated (training only,
	// optional).
	Nodes []string `json:"nodes,omitempty"`
	// Samples is the number of training samples behind the aggregated
	// updates (training only, optional).
	Samples int64 `json:"samples,omitempty"`
}

// Validate checks the lineage: a known Source, Round present exactly for
// training, Nodes and Samples only for training, a valid Parent version,
// and bounded printable strings. The error names the first field that is
// wrong.
func (l *Lineage) Validate() error {
	switch l.Source {
	case SourceUpload, SourceTraining:
	case "":
		return fmt.Errorf("source is empty: want %q or %q", SourceUpload, SourceTraining)
	default:
		return fmt.Errorf("source %q: want %q or %q", l.Source, SourceUpload, SourceTraining)
	}
	if l.Parent != "" && !ValidVersion(l.Parent) {
		return fmt.Errorf("parent %q is not a valid version", l.Parent)
	}
	training := l.Source == SourceTraining
	switch {
	case training && l.Round == "":
		return errors.New("round is required when source is \"training\"")
	case !training && l.Round != "":
		return fmt.Errorf("round %q given for source %q (only training versions have a round)", l.Round, l.Source)
	case !training && len(l.Nodes) > 0:
		return fmt.Errorf("nodes given for source %q (only training versions have contributors)", l.Source)
	case !training && l.Samples != 0:
		return fmt.Errorf("samples given for source %q (only training versions have contributors)", l.Source)
	}
	if err := checkLineageString("round", l.Round); err != nil {
		return err
	}
	if err := checkLineageString("pushed_by", l.PushedBy); err != nil {
		return err
	}
	if l.Samples < 0 {
		return fmt.Errorf("samples %d: want >= 0", l.Samples)
	}
	if len(l.Nodes) > maxLineageNodes {
		return fmt.Errorf("%d nodes: at most %d", len(l.Nodes), maxLineageNodes)
	}
	seen := make(map[string]bool, len(l.Nodes))
	for i, n := range l.Nodes {
		if n == "" {
			return fmt.Errorf("node %d is empty", i)
		}
		if err := checkLineageString(fmt.Sprintf("node %d", i), n); err != nil {
			return err
		}
		if seen[n] {
			return fmt.Errorf("node %q appears twice", n)
		}
		seen[n] = true
	}
	return nil
}

// checkLineageString bounds a free-form lineage string and keeps control
// characters out of it (it ends up in logs and the audit trail).
func checkLineageString(field, s string) error {
	if len(s) > maxLineageString {
		return fmt.Errorf("%s is %d bytes: at most %d", field, len(s), maxLineageString)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("%s %q contains a control or invalid character", field, s)
		}
	}
	return nil
}
