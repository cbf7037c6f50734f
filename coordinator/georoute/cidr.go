package georoute

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/petrel-mesh/petrel/routing"
)

// MaxCIDRLineLen is the longest line ParseCIDRTable accepts, in bytes.
const MaxCIDRLineLen = 4096

// ErrCIDRTable is wrapped by every error of ParseCIDRTable.
var ErrCIDRTable = errors.New("georoute: bad CIDR table")

var regionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CIDRTable maps client IP addresses to regions (and optionally locations)
// by longest-prefix match, for clients that do not say where they are. It is
// immutable once parsed and safe for concurrent use.
type CIDRTable struct {
	v4, v6 prefixSet
}

// cidrEntry is one line of the table.
type cidrEntry struct {
	prefix netip.Prefix
	region string
	loc    routing.Location
	hasLoc bool
	line   int
}

// prefixSet is the entries of one address family, by prefix, with the
// prefix lengths in use, longest first.
type prefixSet struct {
	byPrefix map[netip.Prefix]cidrEntry
	lengths  []int
}

func (s *prefixSet) add(e cidrEntry) {
	if s.byPrefix == nil {
		s.byPrefix = make(map[netip.Prefix]cidrEntry)
	}
	s.byPrefix[e.prefix] = e
	if bits := e.prefix.Bits(); !slices.Contains(s.lengths, bits) {
		s.lengths = append(s.lengths, bits)
		slices.SortFunc(s.lengths, func(a, b int) int { return b - a })
	}
}

// lookup returns the entry with the longest prefix containing ip.
func (s *prefixSet) lookup(ip netip.Addr) (cidrEntry, bool) {
	for _, bits := range s.lengths {
		p, err := ip.Prefix(bits)
		if err != nil {
			continue
		}
		if e, ok := s.byPrefix[p]; ok {
			return e, true
		}
	}
	return cidrEntry{}, false
}

// ParseCIDRTable reads a table with one entry per line:
//
//	CIDR REGION [LAT,LON]
//
// such as "10.1.0.0/16 eu-west 52.52,13.405" or "2001:db8::/32 us-east".
// Fields are separated by spaces or tabs; "#" starts a comment that runs to
// the end of the line; blank lines are skipped. The CIDR is IPv4 or IPv6 in
// canonical form (no host bits set; IPv4 ranges written as IPv4, not as
// IPv4-mapped IPv6), each at most once. The region is 1 to 64 letters,
// digits, '.', '_' or '-', starting with a letter or digit. The location,
// optional, is as routing.ParseLocation reads it (spaces after the comma are
// allowed). Lines are at most MaxCIDRLineLen bytes.
//
// Errors wrap ErrCIDRTable and name the line number and what was wrong.
func ParseCIDRTable(r io.Reader) (*CIDRTable, error) {
	t := &CIDRTable{}
	lines := map[netip.Prefix]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), MaxCIDRLineLen)
	n := 0
	for sc.Scan() {
		n++
		e, ok, err := parseCIDRLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrCIDRTable, n, err)
		}
		if !ok {
			continue
		}
		if prev, dup := lines[e.prefix]; dup {
			return nil, fmt.Errorf("%w: line %d: %s already given on line %d", ErrCIDRTable, n, e.prefix, prev)
		}
		lines[e.prefix] = n
		e.line = n
		if e.prefix.Addr().Is4() {
			t.v4.add(e)
		} else {
			t.v6.add(e)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: line %d: longer than %d bytes", ErrCIDRTable, n+1, MaxCIDRLineLen)
		}
		return nil, fmt.Errorf("%w: after line %d: %v", ErrCIDRTable, n, err)
	}
	return t, nil
}

// parseCIDRLine parses one line; ok is false for a blank or comment line.
func parseCIDRLine(line string) (e cidrEntry, ok bool, err error) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return cidrEntry{}, false, nil
	}
	if len(f) < 2 {
		return cidrEntry{}, false, fmt.Errorf("want \"CIDR REGION [LAT,LON]\", got %q", strings.TrimSpace(line))
	}
	p, err := netip.ParsePrefix(f[0])
	if err != nil {
		return cidrEntry{}, false, fmt.Errorf("CIDR %q: %v", f[0], err)
	}
	if p.Addr().Is4In6() {
		return cidrEntry{}, false, fmt.Errorf("CIDR %q is an IPv4-mapped IPv6 range; write it as IPv4", f[0])
	}
	if m := p.Masked(); m != p {
		return cidrEntry{}, false, fmt.Errorf("CIDR %q has host bits set; did you mean %s?", f[0], m)
	}
	if !regionRE.MatchString(f[1]) {
		return cidrEntry{}, false, fmt.Errorf("region %q must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", f[1])
	}
	e = cidrEntry{prefix: p, region: f[1]}
	if len(f) > 2 {
		s := strings.Join(f[2:], " ")
		loc, err := routing.ParseLocation(s)
		if err != nil {
			return cidrEntry{}, false, fmt.Errorf("location %q: %v", s, err)
		}
		e.loc, e.hasLoc = loc, true
	}
	return e, true, nil
}

// Lookup returns the region, and the location if the entry has one, of the
// most specific range holding ip. ok is false when no range holds it, ip is
// not valid, or t is nil. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are
// looked up as IPv4, and an IPv6 zone is ignored.
func (t *CIDRTable) Lookup(ip netip.Addr) (region string, loc routing.Location, hasLoc bool, ok bool) {
	e, ok := t.lookup(ip)
	if !ok {
		return "", routing.Location{}, false, false
	}
	return e.region, e.loc, e.hasLoc, true
}

func (t *CIDRTable) lookup(ip netip.Addr) (cidrEntry, bool) {
	if t == nil || !ip.IsValid() {
		return cidrEntry{}, false
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return t.v4.lookup(ip)
	}
	return t.v6.lookup(ip)
}

// Len returns the number of ranges in t.
func (t *CIDRTable) Len() int {
	if t == nil {
		return 0
	}
	return len(t.v4.byPrefix) + len(t.v6.byPrefix)
}
