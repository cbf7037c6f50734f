package secagg

import (
	"encoding/binary"
	"fmt"
)

// Wire format. Every message starts with the format version (1) and its
// MessageType, then its fields; integers are little-endian, lists are a
// uint32 count followed by the items, ids are uint32. Decoding is strict:
// lengths must be exact, id lists sorted strictly increasing, ids in
// 1..MaxClients, field elements below 2^255−19, and nothing may follow the
// last field. The encoding of a valid message is canonical, so
// Decode(m.MarshalBinary()) gives m back and vice versa.

// wireVersion is the format version byte.
const wireVersion = 1

// MessageType says which message a buffer holds (its second byte).
type MessageType uint8

// The messages, by round.
const (
	TypeAdvertiseKeys  MessageType = 1 // round 0, client → server
	TypePublicKeys     MessageType = 2 // round 0 → 1, server → client
	TypeShareKeys      MessageType = 3 // round 1, client → server
	TypeCiphertexts    MessageType = 4 // round 1 → 2, server → client
	TypeMaskedInput    MessageType = 5 // round 2, client → server
	TypeUnmaskRequest  MessageType = 6 // round 2 → 3, server → client
	TypeUnmaskResponse MessageType = 7 // round 3, client → server
)

// String names the message type.
func (t MessageType) String() string {
	switch t {
	case TypeAdvertiseKeys:
		return "AdvertiseKeys"
	case TypePublicKeys:
		return "PublicKeys"
	case TypeShareKeys:
		return "ShareKeys"
	case TypeCiphertexts:
		return "Ciphertexts"
	case TypeMaskedInput:
		return "MaskedInput"
	case TypeUnmaskRequest:
		return "UnmaskRequest"
	case TypeUnmaskResponse:
		return "UnmaskResponse"
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// Message is any protocol message.
type Message interface {
	// Type is the message's type.
	Type() MessageType
	// MarshalBinary encodes the message; it fails if the message is not
	// well formed (the same checks as decoding).
	MarshalBinary() ([]byte, error)
}

var (
	_ Message = (*AdvertiseKeys)(nil)
	_ Message = (*PublicKeys)(nil)
	_ Message = (*ShareKeys)(nil)
	_ Message = (*Ciphertexts)(nil)
	_ Message = (*MaskedInput)(nil)
	_ Message = (*UnmaskRequest)(nil)
	_ Message = (*UnmaskResponse)(nil)
)

// AdvertiseKeys is a client's round-0 message: its two X25519 public keys
// and a commitment to its self-mask seed.
type AdvertiseKeys struct {
	From uint32
	// EncKey is c_i^PK, agreed with each neighbour to encrypt shares.
	EncKey [KeySize]byte
	// MaskKey is s_i^PK, agreed with each neighbour to seed pairwise masks.
	MaskKey [KeySize]byte
	// SeedCommit is SHA-256 over the session, the id and b_i; the server
	// checks the rebuilt seed against it.
	SeedCommit [CommitSize]byte
}

// PublicKeys is what the server sends client To after round 0: the
// advertised keys of To and of its neighbours that advertised, sorted by
// From.
type PublicKeys struct {
	To   uint32
	Keys []AdvertiseKeys
}

// EncryptedShare is one client's shares of its two secrets, encrypted for
// one neighbour. Peer is the recipient in ShareKeys and the sender in
// Ciphertexts.
type EncryptedShare struct {
	Peer       uint32
	Ciphertext [CiphertextSize]byte
}

// ShareKeys is a client's round-1 message: one EncryptedShare for each
// neighbour in its PublicKeys, sorted by recipient.
type ShareKeys struct {
	From   uint32
	Shares []EncryptedShare
}

// Ciphertexts is what the server sends client To after round 1: the
// shares addressed to To by the neighbours that completed round 1, sorted
// by sender.
type Ciphertexts struct {
	To     uint32
	Shares []EncryptedShare
}

// MaskedInput is a client's round-2 message: its quantised input plus its
// masks, Config.VectorLen elements of Z_{2^32}.
type MaskedInput struct {
	From   uint32
	Vector []uint32
}

// UnmaskRequest is what the server sends client To after round 2: the
// survivors, the clients whose masked inputs are in the sum (at least the
// neighbours of To among them, and To itself).
type UnmaskRequest struct {
	To        uint32
	Survivors []uint32
}

// Share is one client's share of a secret owned by Owner.
type Share struct {
	Owner uint32
	Value [fieldBytes]byte
}

// UnmaskResponse is a client's round-3 message: its shares of the
// self-mask seeds of the survivors and of the mask keys of the neighbours
// that dropped out after round 1. No owner appears in both lists.
type UnmaskResponse struct {
	From       uint32
	SeedShares []Share
	KeyShares  []Share
}

// Type implements Message.
func (*AdvertiseKeys) Type() MessageType { return TypeAdvertiseKeys }

// Type implements Message.
func (*PublicKeys) Type() MessageType { return TypePublicKeys }

// Type implements Message.
func (*ShareKeys) Type() MessageType { return TypeShareKeys }

// Type implements Message.
func (*Ciphertexts) Type() MessageType { return TypeCiphertexts }

// Type implements Message.
func (*MaskedInput) Type() MessageType { return TypeMaskedInput }

// Type implements Message.
func (*UnmaskRequest) Type() MessageType { return TypeUnmaskRequest }

// Type implements Message.
func (*UnmaskResponse) Type() MessageType { return TypeUnmaskResponse }

// Structural checks shared by encoding and decoding.

func malformed(t MessageType, format string, args ...any) error {
	return fmt.Errorf("%w: %v: "+format, append([]any{ErrMalformed, t}, args...)...)
}

func checkID(t MessageType, what string, id uint32) error {
	if id < 1 || id > MaxClients {
		return malformed(t, "%s id %d outside 1..%d", what, id, MaxClients)
	}
	return nil
}

// checkSorted checks that ids are valid and strictly increasing.
func checkSorted(t MessageType, what string, n int, id func(int) uint32) error {
	if n > MaxClients {
		return malformed(t, "%d %s, at most %d", n, what, MaxClients)
	}
	var prev uint32
	for i := range n {
		v := id(i)
		if err := checkID(t, what, v); err != nil {
			return err
		}
		if i > 0 && v <= prev {
			return malformed(t, "%s ids not strictly increasing (%d after %d)", what, v, prev)
		}
		prev = v
	}
	return nil
}

func (m *AdvertiseKeys) check() error { return checkID(TypeAdvertiseKeys, "sender", m.From) }

func (m *PublicKeys) check() error {
	if err := checkID(TypePublicKeys, "recipient", m.To); err != nil {
		return err
	}
	return checkSorted(TypePublicKeys, "keys", len(m.Keys), func(i int) uint32 { return m.Keys[i].From })
}

func checkShares(t MessageType, self uint32, shares []EncryptedShare) error {
	if err := checkSorted(t, "shares", len(shares), func(i int) uint32 { return shares[i].Peer }); err != nil {
		return err
	}
	for _, s := range shares {
		if s.Peer == self {
			return malformed(t, "share between client %d and itself", self)
		}
	}
	return nil
}

func (m *ShareKeys) check() error {
	if err := checkID(TypeShareKeys, "sender", m.From); err != nil {
		return err
	}
	return checkShares(TypeShareKeys, m.From, m.Shares)
}

func (m *Ciphertexts) check() error {
	if err := checkID(TypeCiphertexts, "recipient", m.To); err != nil {
		return err
	}
	return checkShares(TypeCiphertexts, m.To, m.Shares)
}

func (m *MaskedInput) check() error {
	if err := checkID(TypeMaskedInput, "sender", m.From); err != nil {
		return err
	}
	if len(m.Vector) < 1 || len(m.Vector) > MaxVectorLen {
		return malformed(TypeMaskedInput, "vector of %d elements, want 1..%d", len(m.Vector), MaxVectorLen)
	}
	return nil
}

func (m *UnmaskRequest) check() error {
	if err := checkID(TypeUnmaskRequest, "recipient", m.To); err != nil {
		return err
	}
	return checkSorted(TypeUnmaskRequest, "survivors", len(m.Survivors), func(i int) uint32 { return m.Survivors[i] })
}

func (m *UnmaskResponse) check() error {
	t := TypeUnmaskResponse
	if err := checkID(t, "sender", m.From); err != nil {
		return err
	}
	for _, l := range []struct {
		what   string
		shares []Share
	}{{"seed shares", m.SeedShares}, {"key shares", m.KeyShares}} {
		if err := checkSorted(t, l.what, len(l.shares), func(i int) uint32 { return l.shares[i].Owner }); err != nil {
			return err
		}
		for _, s := range l.shares {
			if !fieldValid(&s.Value) {
				return malformed(t, "%s: share of client %d is not a field element", l.what, s.Owner)
			}
		}
	}
	// Both lists are sorted: merge to find an owner in both.
	i, j := 0, 0
	for i < len(m.SeedShares) && j < len(m.KeyShares) {
		a, b := m.SeedShares[i].Owner, m.KeyShares[j].Owner
		switch {
		case a == b:
			return malformed(t, "shares of both secrets of client %d", a)
		case a < b:
			i++
		default:
			j++
		}
	}
	for _, s := range m.KeyShares {
		if s.Owner == m.From {
			return malformed(t, "client %d reveals its own mask key share", m.From)
		}
	}
	return nil
}

// Encoding.

func header(t MessageType, size int) []byte {
	b := make([]byte, 0, size)
	return append(b, wireVersion, byte(t))
}

var le = binary.LittleEndian

// MarshalBinary implements Message.
func (m *AdvertiseKeys) MarshalBinary() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := header(m.Type(), 2+4+2*KeySize+CommitSize)
	b = le.AppendUint32(b, m.From)
	b = append(b, m.EncKey[:]...)
	b = append(b, m.MaskKey[:]...)
	return append(b, m.SeedCommit[:]...), nil
}

// MarshalBinary implements Message.
func (m *PublicKeys) MarshalBinary() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := header(m.Type(), 2+8+len(m.Keys)*(4+2*KeySize+CommitSize))
	b = le.AppendUint32(b, m.To)
	b = le.AppendUint32(b, uint32(len(m.Keys)))
	for _, k := range m.Keys {
		b = le.AppendUint32(b, k.From)
		b = append(b, k.EncKey[:]...)
		b = append(b, k.MaskKey[:]...)
		b = append(b, k.SeedCommit[:]...)
	}
	return b, nil
}

func appendShares(b []byte, id uint32, shares []EncryptedShare) []byte {
	b = le.AppendUint32(b, id)
	b = le.AppendUint32(b, uint32(len(shares)))
	for _, s := range shares {
		b = le.AppendUint32(b, s.Peer)
		b = append(b, s.Ciphertext[:]...)
	}
	return b
}

// MarshalBinary implements Message.
func (m *ShareKeys) MarshalBinary() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return appendShares(header(m.Type(), 2+8+len(m.Shares)*(4+CiphertextSize)), m.From, m.Shares), nil
}

// MarshalBinary implements Message.
func (m *Ciphertexts) MarshalBinary() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return appendShares(header(m.Type(), 2+8+len(m.Shares)*(4+CiphertextSize)), m.To, m.Shares), nil
}

// MarshalBinary implements Message.
func (m *MaskedInput) MarshalBinary() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := header(m.Type(), 2+8+4*len(m.Vector))
	b = le.AppendUint32(b, m.From)
	b = le.AppendUint32(b, uint32(len(m.Vector)))
	for _, v := range m.Vector {
		b = le.AppendUint32(b, v)
	}
	return b, nil
}

// MarshalBinary implements Message.
func (m *UnmaskRequest) MarshalBinary() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := header(m.Type(), 2+8+4*len(m.Survivors))
	b = le.AppendUint32(b, m.To)
	b = le.AppendUint32(b, uint32(len(m.Survivors)))
	for _, id := range m.Survivors {
		b = le.AppendUint32(b, id)
	}
	return b, nil
}

// MarshalBinary implements Message.
func (m *UnmaskResponse) MarshalBinary() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := header(m.Type(), 2+12+(len(m.SeedShares)+len(m.KeyShares))*(4+fieldBytes))
	b = le.AppendUint32(b, m.From)
	for _, l := range [][]Share{m.SeedShares, m.KeyShares} {
		b = le.AppendUint32(b, uint32(len(l)))
		for _, s := range l {
			b = le.AppendUint32(b, s.Owner)
			b = append(b, s.Value[:]...)
		}
	}
	return b, nil
}

// Decoding.

// reader reads fields from a buffer, remembering the first failure.
type reader struct {
	t   MessageType
	b   []byte
	err error
}

func newReader(b []byte, t MessageType) *reader {
	r := &reader{t: t, b: b}
	if len(b) < 2 {
		r.err = malformed(t, "%d bytes, too short for a header", len(b))
		return r
	}
	if b[0] != wireVersion {
		r.err = malformed(t, "format version %d, want %d", b[0], wireVersion)
		return r
	}
	if MessageType(b[1]) != t {
		r.err = malformed(t, "buffer holds a %v", MessageType(b[1]))
		return r
	}
	r.b = b[2:]
	return r
}

func (r *reader) bytes(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = malformed(r.t, "truncated in %s (%d bytes left, need %d)", what, len(r.b), n)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u32(what string) uint32 {
	b := r.bytes(4, what)
	if b == nil {
		return 0
	}
	return le.Uint32(b)
}

// count reads a list length and checks that the rest of the buffer can
// hold that many items of itemSize bytes, so a forged count cannot cause
// a large allocation.
func (r *reader) count(what string, itemSize, limit int) int {
	n := r.u32(what + " count")
	if r.err != nil {
		return 0
	}
	if uint64(n) > uint64(limit) {
		r.err = malformed(r.t, "%d %s, at most %d", n, what, limit)
		return 0
	}
	if uint64(n)*uint64(itemSize) > uint64(len(r.b)) {
		r.err = malformed(r.t, "%d %s do not fit in %d bytes", n, what, len(r.b))
		return 0
	}
	return int(n)
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = malformed(r.t, "%d trailing bytes", len(r.b))
	}
	return r.err
}

// DecodeAdvertiseKeys decodes and checks an AdvertiseKeys message.
func DecodeAdvertiseKeys(b []byte) (*AdvertiseKeys, error) {
	r := newReader(b, TypeAdvertiseKeys)
	m := &AdvertiseKeys{From: r.u32("sender")}
	copy(m.EncKey[:], r.bytes(KeySize, "encryption key"))
	copy(m.MaskKey[:], r.bytes(KeySize, "mask key"))
	copy(m.SeedCommit[:], r.bytes(CommitSize, "seed commitment"))
	if err := r.done(); err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodePublicKeys decodes and checks a PublicKeys message.
func DecodePublicKeys(b []byte) (*PublicKeys, error) {
	r := newReader(b, TypePublicKeys)
	m := &PublicKeys{To: r.u32("recipient")}
	n := r.count("keys", 4+2*KeySize+CommitSize, MaxClients)
	if r.err == nil {
		m.Keys = make([]AdvertiseKeys, n)
	}
	for i := range m.Keys {
		k := &m.Keys[i]
		k.From = r.u32("key owner")
		copy(k.EncKey[:], r.bytes(KeySize, "encryption key"))
		copy(k.MaskKey[:], r.bytes(KeySize, "mask key"))
		copy(k.SeedCommit[:], r.bytes(CommitSize, "seed commitment"))
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

func (r *reader) shares() []EncryptedShare {
	n := r.count("shares", 4+CiphertextSize, MaxClients)
	if r.err != nil {
		return nil
	}
	out := make([]EncryptedShare, n)
	for i := range out {
		out[i].Peer = r.u32("share peer")
		copy(out[i].Ciphertext[:], r.bytes(CiphertextSize, "ciphertext"))
	}
	return out
}

// DecodeShareKeys decodes and checks a ShareKeys message.
func DecodeShareKeys(b []byte) (*ShareKeys, error) {
	r := newReader(b, TypeShareKeys)
	m := &ShareKeys{From: r.u32("sender")}
	m.Shares = r.shares()
	if err := r.done(); err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeCiphertexts decodes and checks a Ciphertexts message.
func DecodeCiphertexts(b []byte) (*Ciphertexts, error) {
	r := newReader(b, TypeCiphertexts)
	m := &Ciphertexts{To: r.u32("recipient")}
	m.Shares = r.shares()
	if err := r.done(); err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeMaskedInput decodes and checks a MaskedInput message.
func DecodeMaskedInput(b []byte) (*MaskedInput, error) {
	r := newReader(b, TypeMaskedInput)
	m := &MaskedInput{From: r.u32("sender")}
	n := r.count("vector elements", 4, MaxVectorLen)
	if raw := r.bytes(4*n, "vector"); r.err == nil {
		m.Vector = make([]uint32, n)
		for i := range m.Vector {
			m.Vector[i] = le.Uint32(raw[4*i:])
		}
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeUnmaskRequest decodes and checks an UnmaskRequest message.
func DecodeUnmaskRequest(b []byte) (*UnmaskRequest, error) {
	r := newReader(b, TypeUnmaskRequest)
	m := &UnmaskRequest{To: r.u32("recipient")}
	n := r.count("survivors", 4, MaxClients)
	if r.err == nil {
		m.Survivors = make([]uint32, n)
	}
	for i := range m.Survivors {
		m.Survivors[i] = r.u32("survivor")
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

func (r *reader) fieldShares(what string) []Share {
	n := r.count(what, 4+fieldBytes, MaxClients)
	if r.err != nil {
		return nil
	}
	out := make([]Share, n)
	for i := range out {
		out[i].Owner = r.u32("share owner")
		copy(out[i].Value[:], r.bytes(fieldBytes, "share value"))
	}
	return out
}

// DecodeUnmaskResponse decodes and checks an UnmaskResponse message.
func DecodeUnmaskResponse(b []byte) (*UnmaskResponse, error) {
	r := newReader(b, TypeUnmaskResponse)
	m := &UnmaskResponse{From: r.u32("sender")}
	m.SeedShares = r.fieldShares("seed shares")
	m.KeyShares = r.fieldShares("key shares")
	if err := r.done(); err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

// Decode decodes any message by its type byte. The result is one of the
// pointer types of this package.
func Decode(b []byte) (Message, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes, too short for a header", ErrMalformed, len(b))
	}
	switch t := MessageType(b[1]); t {
	case TypeAdvertiseKeys:
		return asMessage(DecodeAdvertiseKeys(b))
	case TypePublicKeys:
		return asMessage(DecodePublicKeys(b))
	case TypeShareKeys:
		return asMessage(DecodeShareKeys(b))
	case TypeCiphertexts:
		return asMessage(DecodeCiphertexts(b))
	case TypeMaskedInput:
		return asMessage(DecodeMaskedInput(b))
	case TypeUnmaskRequest:
		return asMessage(DecodeUnmaskRequest(b))
	case TypeUnmaskResponse:
		return asMessage(DecodeUnmaskResponse(b))
	default:
		return nil, fmt.Errorf("%w: unknown message type %d", ErrMalformed, uint8(t))
	}
}

// asMessage converts a typed decode result, keeping a failed decode a nil
// interface rather than an interface holding a nil pointer.
func asMessage[T Message](m T, err error) (Message, error) {
	if err != nil {
		return nil, err
	}
	return m, nil
}
