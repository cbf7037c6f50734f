package coordinator

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
)

// Scopes of management API tokens. admin can do everything; push can
// push models and steer rollouts; read can only read; join can only
// enrol edge nodes (POST /v1/enrol), which admin may do too.
const (
	ScopeAdmin = "admin"
	ScopePush  = "push"
	ScopeRead  = "read"
	ScopeJoin  = "join"
)

// Token is one management API bearer token. Name is the identity that the
// audit trail records.
type Token struct {
	Name   string   `json:"name"`
	Secret string   `json:"token"`
	Scopes []string `json:"scopes"`
}

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)

// Allows reports whether the token grants scope.
func (t *Token) Allows(scope string) bool {
	if slices.Contains(t.Scopes, ScopeAdmin) {
		return true
	}
	switch scope {
	case ScopeRead:
		return slices.Contains(t.Scopes, ScopeRead) || slices.Contains(t.Scopes, ScopePush)
	default:
		return slices.Contains(t.Scopes, scope)
	}
}

// Tokens checks bearer tokens in constant time per token.
type Tokens struct {
	list []tokenEntry
}

type tokenEntry struct {
	tok Token
	sum [32]byte
}

// NewTokens validates the tokens: names unique and well formed, secrets at
// least 16 characters, scopes known.
func NewTokens(ts []Token) (*Tokens, error) {
	out := &Tokens{}
	seen := map[string]bool{}
	for i, t := range ts {
		if !tokenNameRE.MatchString(t.Name) {
			return nil, fmt.Errorf("token %d: name %q: want 1-64 letters, digits, '_', '.', '@', '-'", i, t.Name)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("token %q appears twice", t.Name)
		}
		seen[t.Name] = true
		if len(t.Secret) < 16 {
			return nil, fmt.Errorf("token %q: secret is shorter than 16 characters", t.Name)
		}
		if len(t.Scopes) == 0 {
			return nil, fmt.Errorf("token %q has no scopes", t.Name)
		}
		for _, s := range t.Scopes {
			if s != ScopeAdmin && s != ScopePush && s != ScopeRead && s != ScopeJoin {
				return nil, fmt.Errorf("token %q: unknown scope %q (admin, push, read, join)", t.Name, s)
			}
		}
		out.list = append(out.list, tokenEntry{tok: t, sum: sha256.Sum256([]byte(t.Secret))})
	}
	return out, nil
}

// LoadTokens reads a JSON array of tokens from a file that only its owner
// may read.
func LoadTokens(path string) (*Tokens, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("tokens file %s is readable by group or others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	var ts []Token
	if err := json.Unmarshal(b, &ts); err != nil {
		return nil, fmt.Errorf("tokens file %s: want a JSON array of {name, token, scopes}: %v", path, err)
	}
	if len(ts) == 0 {
		return nil, errors.New("tokens file has no tokens")
	}
	return NewTokens(ts)
}

// Lookup returns the token whose secret is s.
func (t *Tokens) Lookup(s string) (*Token, bool) {
	if t == nil || s == "" {
		return nil, false
	}
	sum := sha256.Sum256([]byte(s))
	var found *Token
	for i := range t.list {
		if subtle.ConstantTimeCompare(sum[:], t.list[i].sum[:]) == 1 {
			found = &t.list[i].tok
		}
	}
	return found, found != nil
}
