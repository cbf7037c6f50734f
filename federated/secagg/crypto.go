package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"sync"
)

// Sizes of the cryptographic pieces on the wire.
const (
	// KeySize is the size of an X25519 public key.
	KeySize = 32
	// CommitSize is the size of a self-mask seed commitment (SHA-256).
	CommitSize = sha256.Size
	// nonceSize is the AES-GCM nonce size.
	nonceSize = 12
	// sharePlainSize is a decrypted share: the mask-key share, then the
	// self-mask-seed share.
	sharePlainSize = 2 * fieldBytes
	// CiphertextSize is the size of one encrypted pair of shares: nonce,
	// sealed shares, GCM tag.
	CiphertextSize = nonceSize + sharePlainSize + 16
)

// Domain-separation labels for everything derived from a secret.
const (
	labelMaskSeed   = "petrel/secagg/v1 pairwise mask seed"
	labelShareKey   = "petrel/secagg/v1 share encryption key"
	labelShareAAD   = "petrel/secagg/v1 share"
	labelSelfMask   = "petrel/secagg/v1 self mask"
	labelCommitment = "petrel/secagg/v1 self mask commitment"
	labelGraph      = "petrel/secagg/v1 neighbour graph"
)

// context encodes a label, the session and two ids unambiguously.
func context(label string, session []byte, a, b uint32) []byte {
	out := make([]byte, 0, len(label)+1+2+len(session)+8)
	out = append(out, label...)
	out = append(out, 0)
	out = binary.BigEndian.AppendUint16(out, uint16(len(session)))
	out = append(out, session...)
	out = binary.BigEndian.AppendUint32(out, a)
	return binary.BigEndian.AppendUint32(out, b)
}

// deriveKey expands a secret into a 32-byte key bound to label, session and
// the two ids (in the order given).
func deriveKey(secret []byte, label string, session []byte, a, b uint32) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, secret, nil, string(context(label, session, a, b)), 32)
	if err != nil {
		return nil, fmt.Errorf("secagg: derive key: %w", err)
	}
	return k, nil
}

// pairwiseMaskSeed derives the seed of the mask shared by clients a and b
// from their X25519 shared secret. It is symmetric in a and b.
func pairwiseMaskSeed(shared []byte, session []byte, a, b uint32) ([]byte, error) {
	if a > b {
		a, b = b, a
	}
	return deriveKey(shared, labelMaskSeed, session, a, b)
}

// selfMaskKey derives the PRG key of client id's self mask from its seed.
func selfMaskKey(seed *big.Int, session []byte, id uint32) ([]byte, error) {
	b := fieldEncode(seed)
	return deriveKey(b[:], labelSelfMask, session, id, 0)
}

// seedCommitment commits client id to its self-mask seed.
func seedCommitment(seed *big.Int, session []byte, id uint32) [CommitSize]byte {
	b := fieldEncode(seed)
	h := sha256.New()
	h.Write(context(labelCommitment, session, id, 0))
	h.Write(b[:])
	var out [CommitSize]byte
	h.Sum(out[:0])
	return out
}

// newX25519Key draws an X25519 private key whose scalar, read as a
// little-endian integer, is below p, so it can be Shamir-shared in GF(p).
// The scalar is clamped up front (RFC 7748: low three bits clear, bit 255
// clear, bit 254 set), which changes nothing in the key's strength since
// X25519 clamps anyway, but makes the encoding of a key unique: a rebuilt
// scalar either is exactly the original or is detectably wrong.
func newX25519Key(rng io.Reader) (*ecdh.PrivateKey, *big.Int, error) {
	var buf [32]byte
	for range 8 {
		if _, err := io.ReadFull(rng, buf[:]); err != nil {
			return nil, nil, fmt.Errorf("secagg: read random source: %w", err)
		}
		clamp(&buf)
		v := leToInt(buf[:])
		if v.Cmp(fieldP) >= 0 {
			continue
		}
		k, err := ecdh.X25519().NewPrivateKey(buf[:])
		if err != nil {
			return nil, nil, fmt.Errorf("secagg: x25519 key: %w", err)
		}
		return k, v, nil
	}
	return nil, nil, errRNG
}

// clamp applies RFC 7748 clamping to a little-endian scalar.
func clamp(b *[32]byte) {
	b[0] &= 248
	b[31] &= 127
	b[31] |= 64
}

// x25519FromField rebuilds a private key from its field element, which
// must be a clamped scalar.
func x25519FromField(v *big.Int) (*ecdh.PrivateKey, error) {
	be := fieldEncode(v)
	var le [32]byte
	for i := range be {
		le[i] = be[31-i]
	}
	c := le
	clamp(&c)
	if c != le {
		return nil, fmt.Errorf("scalar is not clamped")
	}
	return ecdh.X25519().NewPrivateKey(le[:])
}

func leToInt(le []byte) *big.Int {
	be := make([]byte, len(le))
	for i := range le {
		be[i] = le[len(le)-1-i]
	}
	return new(big.Int).SetBytes(be)
}

// checkKey is a fixed X25519 key used to screen public keys: a low-order
// point yields the all-zero shared secret with any clamped scalar, which
// ECDH reports as an error.
var checkKey = sync.OnceValues(func() (*ecdh.PrivateKey, error) {
	scalar := [32]byte{9}
	return ecdh.X25519().NewPrivateKey(scalar[:])
})

// parsePublicKey decodes an X25519 public key and rejects low-order points.
func parsePublicKey(b [KeySize]byte) (*ecdh.PublicKey, error) {
	pk, err := ecdh.X25519().NewPublicKey(b[:])
	if err != nil {
		return nil, err
	}
	k, err := checkKey()
	if err != nil {
		return nil, err
	}
	if _, err := k.ECDH(pk); err != nil {
		return nil, fmt.Errorf("low-order public key")
	}
	return pk, nil
}

// shareAAD is the additional data of the ciphertext from one client to
// another.
func shareAAD(session []byte, from, to uint32) []byte {
	return context(labelShareAAD, session, from, to)
}

// sealShares encrypts a pair of shares from one client to another under
// the directional key derived from their shared secret.
func sealShares(shared, session []byte, from, to uint32, plain []byte, rng io.Reader) ([CiphertextSize]byte, error) {
	var out [CiphertextSize]byte
	aead, err := shareAEAD(shared, session, from, to)
	if err != nil {
		return out, err
	}
	if _, err := io.ReadFull(rng, out[:nonceSize]); err != nil {
		return out, fmt.Errorf("secagg: read random source: %w", err)
	}
	aead.Seal(out[nonceSize:nonceSize], out[:nonceSize], plain, shareAAD(session, from, to))
	return out, nil
}

// openShares decrypts and authenticates a ciphertext from one client to
// another.
func openShares(shared, session []byte, from, to uint32, ct *[CiphertextSize]byte) ([]byte, error) {
	aead, err := shareAEAD(shared, session, from, to)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, ct[:nonceSize], ct[nonceSize:], shareAAD(session, from, to))
	if err != nil {
		return nil, fmt.Errorf("%w: from client %d", ErrDecrypt, from)
	}
	return plain, nil
}

func shareAEAD(shared, session []byte, from, to uint32) (cipher.AEAD, error) {
	key, err := deriveKey(shared, labelShareKey, session, from, to)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secagg: share cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secagg: share cipher: %w", err)
	}
	return aead, nil
}

// prgChunk is how many vector elements the PRG expands at a time.
const prgChunk = 8192

// prg expands seeds into mask vectors with AES-256-CTR (zero IV; every key
// is used for exactly one stream) and adds or subtracts them.
type prg struct {
	zero [4 * prgChunk]byte
	buf  [4 * prgChunk]byte
}

// apply adds the stream of key to acc, or subtracts it when negate is set.
func (p *prg) apply(acc []uint32, key []byte, negate bool) error {
	block, err := aes.NewCipher(key)
	if err != nil {
		return fmt.Errorf("secagg: mask prg: %w", err)
	}
	var iv [aes.BlockSize]byte
	stream := cipher.NewCTR(block, iv[:])
	for off := 0; off < len(acc); off += prgChunk {
		part := acc[off:min(off+prgChunk, len(acc))]
		buf := p.buf[:4*len(part)]
		stream.XORKeyStream(buf, p.zero[:len(buf)])
		if negate {
			for i := range part {
				part[i] -= binary.LittleEndian.Uint32(buf[4*i:])
			}
		} else {
			for i := range part {
				part[i] += binary.LittleEndian.Uint32(buf[4*i:])
			}
		}
	}
	return nil
}
