package blobstore

import (
	"errors"
	"fmt"
)

// DigestPrefix starts every digest: the only algorithm is SHA-256, the
// one Petrel's manifests use (see models.DigestBytes).
const DigestPrefix = "sha256:"

// hexLen is the length of the hex part of a digest.
const hexLen = 64

// Errors returned by the store, the handler and the fetcher. Callers test
// for them with errors.Is; the returned errors wrap them with detail.
var (
	// ErrBadDigest: the digest is not "sha256:" followed by 64 lowercase
	// hex digits. Nothing touches the disk or the network for such a digest.
	ErrBadDigest = errors.New("malformed digest")
	// ErrNotFound: the blob is not in the store.
	ErrNotFound = errors.New("blob not found")
	// ErrDigestMismatch: bytes offered for a digest (by Put's reader or by
	// a fetch source) do not hash to it, or do not have the declared size.
	// Such bytes are never committed.
	ErrDigestMismatch = errors.New("content does not match digest")
	// ErrCorrupt: a committed blob no longer hashes to its digest when it
	// is read back (bit rot, truncation, tampering). The blob has been
	// removed from the store by the time this error is returned.
	ErrCorrupt = errors.New("blob corrupt on disk")
	// ErrTooLarge: the blob cannot fit in the store's byte budget at all.
	ErrTooLarge = errors.New("blob larger than the store")
	// ErrInProgress: the operation needs a settled blob, and the blob is
	// being written.
	ErrInProgress = errors.New("blob is being written")
	// ErrFetchFailed: every source of a Fetch failed; the error joins the
	// reasons, and the FetchReport has one Attempt per try.
	ErrFetchFailed = errors.New("fetch failed")
)

// ParseDigest checks that digest is "sha256:<64 lowercase hex>" and
// returns the hex part, which is safe to use as a file name. Errors wrap
// ErrBadDigest.
func ParseDigest(digest string) (string, error) {
	if len(digest) != len(DigestPrefix)+hexLen || digest[:len(DigestPrefix)] != DigestPrefix {
		return "", fmt.Errorf("%w: %s: want %s<64 lowercase hex digits>", ErrBadDigest, quoteShort(digest), DigestPrefix)
	}
	hex := digest[len(DigestPrefix):]
	if !validHex(hex) {
		return "", fmt.Errorf("%w: %s: want %s<64 lowercase hex digits>", ErrBadDigest, quoteShort(digest), DigestPrefix)
	}
	return hex, nil
}

// ValidDigest reports whether digest is "sha256:<64 lowercase hex>".
func ValidDigest(digest string) bool {
	_, err := ParseDigest(digest)
	return err == nil
}

// validHex reports whether s is exactly 64 lowercase hex digits: the only
// file names the store creates or trusts for blobs.
func validHex(s string) bool {
	if len(s) != hexLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// quoteShort quotes s for an error message, cutting it so that a hostile
// input cannot make error messages (and logs) arbitrarily long.
func quoteShort(s string) string {
	const max = 100
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
