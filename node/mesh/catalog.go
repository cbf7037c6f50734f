package mesh

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Bounds on a model catalog. They are chosen so that the largest valid
// catalog, encoded, fits in one push/pull state of MaxStateBytes with its
// headers: 2 + MaxCatalogEntries*235 bytes of catalog and at most 76 of
// state and record headers, 962 638 bytes < 1 MiB.
const (
	// MaxCatalogEntries is the maximum number of entries in a catalog.
	MaxCatalogEntries = 4096
	// MaxModelNameLen is the maximum length of a model name in bytes.
	MaxModelNameLen = 128
	// MaxModelVersionLen is the maximum length of a model version in bytes.
	MaxModelVersionLen = 64
)

// sha256Prefix starts every CatalogEntry.Digest.
const sha256Prefix = "sha256:"

// Catalog is the set of model versions a node holds, as advertised to its
// peers. Its Digest travels in node metadata; the full catalog travels in
// push/pull state and, when small, in gossip broadcasts.
type Catalog struct {
	// Generation increases whenever the catalog changes. It is chosen by
	// the StateSource; the mesh only compares it for equality with the one
	// in the node's metadata.
	Generation uint64
	// Models lists the model versions. Order does not matter: the mesh
	// sorts by (Name, Version) before encoding or hashing.
	Models []CatalogEntry
}

// CatalogEntry is one model version in a Catalog.
type CatalogEntry struct {
	// Name is the model name: 1 to MaxModelNameLen bytes of UTF-8 without
	// spaces or control characters.
	Name string
	// Version is the model version, with the same rules as Name and at
	// most MaxModelVersionLen bytes.
	Version string
	// Digest is the artifact digest, "sha256:" and 64 lower-case hex
	// digits.
	Digest string
	// Ready reports whether the version is loaded and serving.
	Ready bool
	// Bytes is the artifact size; never negative.
	Bytes int64
}

// Validate reports the first problem with c, or nil: too many entries, an
// invalid entry, or two entries with the same name and version.
func (c Catalog) Validate() error {
	if len(c.Models) > MaxCatalogEntries {
		return fmt.Errorf("mesh: catalog: %d entries, at most %d allowed", len(c.Models), MaxCatalogEntries)
	}
	for i := range c.Models {
		if err := c.Models[i].validate(); err != nil {
			return fmt.Errorf("mesh: catalog: entry %d: %w", i, err)
		}
	}
	sorted := sortedModels(c.Models)
	for i := 1; i < len(sorted); i++ {
		if compareEntries(&sorted[i-1], &sorted[i]) == 0 {
			return fmt.Errorf("mesh: catalog: duplicate entry %s@%s", sorted[i].Name, sorted[i].Version)
		}
	}
	return nil
}

// Clone returns a deep copy of c.
func (c Catalog) Clone() Catalog {
	return Catalog{Generation: c.Generation, Models: slices.Clone(c.Models)}
}

func (e *CatalogEntry) validate() error {
	if err := checkText(e.Name, MaxModelNameLen, true); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if err := checkText(e.Version, MaxModelVersionLen, true); err != nil {
		return fmt.Errorf("version: %w", err)
	}
	if _, err := parseSHA256(e.Digest); err != nil {
		return err
	}
	if e.Bytes < 0 {
		return fmt.Errorf("bytes: %d is negative", e.Bytes)
	}
	return nil
}

// parseSHA256 parses "sha256:<64 lower-case hex>". Upper case is rejected
// so that every digest has exactly one spelling.
func parseSHA256(s string) ([32]byte, error) {
	var d [32]byte
	hexPart, ok := strings.CutPrefix(s, sha256Prefix)
	if !ok || len(hexPart) != 64 {
		return d, fmt.Errorf("digest: %q is not sha256:<64 hex digits>", s)
	}
	for i := 0; i < len(hexPart); i++ {
		if c := hexPart[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return d, fmt.Errorf("digest: %q is not lower-case hex", s)
		}
	}
	if _, err := hex.Decode(d[:], []byte(hexPart)); err != nil {
		return d, fmt.Errorf("digest: %w", err)
	}
	return d, nil
}

// Digest returns the 64-bit xxhash of c's models in canonical order (sorted
// by name then version), independent of Generation and of the order of
// c.Models. Node metadata carries it so that peers can tell, without the
// full catalog, whether a catalog they hold is current. It is defined for
// every Catalog, valid or not.
func Digest(c Catalog) uint64 {
	h := xxhash.New()
	var buf [binary.MaxVarintLen64]byte
	str := func(s string) {
		_, _ = h.Write(binary.AppendUvarint(buf[:0], uint64(len(s))))
		_, _ = h.WriteString(s)
	}
	_, _ = h.WriteString("petrel-catalog-v1\x00")
	for _, e := range sortedModels(c.Models) {
		str(e.Name)
		str(e.Version)
		str(e.Digest)
		var ready byte
		if e.Ready {
			ready = 1
		}
		_, _ = h.Write([]byte{ready})
		_, _ = h.Write(binary.BigEndian.AppendUint64(buf[:0], uint64(e.Bytes)))
	}
	return h.Sum64()
}

func compareEntries(a, b *CatalogEntry) int {
	return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Version, b.Version))
}

// sortedModels returns a sorted copy of models.
func sortedModels(models []CatalogEntry) []CatalogEntry {
	s := slices.Clone(models)
	slices.SortFunc(s, func(a, b CatalogEntry) int { return compareEntries(&a, &b) })
	return s
}

// Catalog body v1 layout (integers big-endian), shared by push/pull state
// and broadcasts:
//
//	count     uint16 (0..MaxCatalogEntries)
//	count times, sorted strictly by (name, version):
//	  name    uint8 length + bytes
//	  version uint8 length + bytes
//	  digest  [32]byte (the sha256 digest, raw)
//	  flags   uint8 (bit 0: ready; other bits must be 0)
//	  bytes   uint64 (at most math.MaxInt64)
const (
	entryMaxLen       = 1 + MaxModelNameLen + 1 + MaxModelVersionLen + 32 + 1 + 8
	entryMinLen       = entryMaxLen - MaxModelNameLen - MaxModelVersionLen
	catalogBodyMaxLen = 2 + MaxCatalogEntries*entryMaxLen

	entryFlagReady = 1 << 0
)

// appendCatalogBody validates c and appends its canonical body encoding.
func appendCatalogBody(b []byte, c Catalog) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	models := sortedModels(c.Models)
	b = binary.BigEndian.AppendUint16(b, uint16(len(models)))
	for i := range models {
		e := &models[i]
		d, _ := parseSHA256(e.Digest) // validated above
		b = append(b, byte(len(e.Name)))
		b = append(b, e.Name...)
		b = append(b, byte(len(e.Version)))
		b = append(b, e.Version...)
		b = append(b, d[:]...)
		var flags byte
		if e.Ready {
			flags |= entryFlagReady
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint64(b, uint64(e.Bytes))
	}
	return b, nil
}

// readCatalogBody strictly decodes a catalog body from r. The entries must
// be valid and sorted strictly by (name, version), so that every catalog
// has one encoding.
func readCatalogBody(r *reader) ([]CatalogEntry, error) {
	n := int(r.u16())
	if r.err != nil {
		return nil, r.err
	}
	if n > MaxCatalogEntries {
		return nil, fmt.Errorf("catalog: %d entries, at most %d allowed", n, MaxCatalogEntries)
	}
	// Every entry takes more than entryMinLen bytes, so a count that the
	// remaining input cannot hold fails here instead of allocating for it.
	if n*entryMinLen > len(r.b) {
		return nil, fmt.Errorf("catalog: %d entries: %w", n, errTruncated)
	}
	models := make([]CatalogEntry, 0, n)
	for i := range n {
		var e CatalogEntry
		e.Name = r.str8()
		e.Version = r.str8()
		d := r.take(32)
		flags := r.u8()
		size := r.u64()
		if r.err != nil {
			return nil, fmt.Errorf("catalog: entry %d: %w", i, r.err)
		}
		if flags&^entryFlagReady != 0 {
			return nil, fmt.Errorf("catalog: entry %d: unknown flags %#x", i, flags)
		}
		if size > math.MaxInt64 {
			return nil, fmt.Errorf("catalog: entry %d: size %d overflows int64", i, size)
		}
		e.Digest = sha256Prefix + hex.EncodeToString(d)
		e.Ready = flags&entryFlagReady != 0
		e.Bytes = int64(size)
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("catalog: entry %d: %w", i, err)
		}
		if i > 0 && compareEntries(&models[i-1], &e) >= 0 {
			return nil, fmt.Errorf("catalog: entry %d: not sorted after %s@%s", i, models[i-1].Name, models[i-1].Version)
		}
		models = append(models, e)
	}
	return models, nil
}
