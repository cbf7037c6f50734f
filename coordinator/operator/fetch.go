package operator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Errors of fetching an artifact, for errors.Is.
var (
	// ErrDigestMismatch: the downloaded file's SHA-256 is not the spec's.
	ErrDigestMismatch = errors.New("sha256 mismatch")
	// ErrTooLarge: the file is larger than the limit for its kind.
	ErrTooLarge = errors.New("file too large")
	// errDownload: the file could not be downloaded (worth retrying).
	errDownload = errors.New("download failed")
)

// Fetcher downloads an artifact. Implementations return an error wrapping
// ErrTooLarge when the file has more than max bytes.
type Fetcher interface {
	Fetch(ctx context.Context, url string, max int64) ([]byte, error)
}

// HTTPFetcher fetches over http and https.
type HTTPFetcher struct {
	// Client defaults to http.DefaultClient's transport with no global
	// timeout (Timeout bounds each download).
	Client *http.Client
	// Timeout bounds one download; default 5 minutes.
	Timeout time.Duration
}

var _ Fetcher = (*HTTPFetcher)(nil)

// Fetch GETs url and returns the body of a 200 answer, at most max bytes.
func (f *HTTPFetcher) Fetch(ctx context.Context, url string, max int64) ([]byte, error) {
	hc := f.Client
	if hc == nil {
		hc = &http.Client{}
	}
	to := f.Timeout
	if to <= 0 {
		to = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "petrel-operator")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("download %s: %s", url, resp.Status)
	}
	if resp.ContentLength > max {
		return nil, fmt.Errorf("download %s: %w: %d bytes, the limit is %d", url, ErrTooLarge, resp.ContentLength, max)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", url, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("download %s: %w: more than %d bytes", url, ErrTooLarge, max)
	}
	return b, nil
}

// fetchVerified downloads url and checks its SHA-256 (hex) digest.
func fetchVerified(ctx context.Context, f Fetcher, what, url, want string, max int64) ([]byte, error) {
	b, err := f.Fetch(ctx, url, max)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, errDownload, err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != want {
		return nil, fmt.Errorf("%s: %w: %s has sha256 %s, the spec says %s", what, ErrDigestMismatch, url, got, want)
	}
	return b, nil
}
