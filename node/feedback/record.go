package feedback

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"
	"unicode/utf8"

	"github.com/petrel-mesh/petrel/models"
)

// Limits of one record. A record beyond them is refused by Append, and a
// frame that claims more is corrupt.
const (
	// MaxInputs is the most features one record holds.
	MaxInputs = 1 << 20
	// MaxRequestIDBytes bounds Record.RequestID.
	MaxRequestIDBytes = 256
	// maxPayload bounds a frame's payload: the fields at their limits.
	maxPayload = 1 + 8 + 3*binary.MaxVarintLen64 + 128 + 64 + MaxRequestIDBytes + binary.MaxVarintLen64 + binary.MaxVarintLen64 + 4*MaxInputs
	// frameHeader is the length and CRC in front of every payload.
	frameHeader = 8
	// recordFormat is the first byte of every payload.
	recordFormat = 1
)

// ErrCorrupt wraps every error of decoding a frame or payload: the bytes
// are not a record this package wrote, or were damaged.
var ErrCorrupt = errors.New("corrupt feedback record")

// ErrInvalidRecord wraps every error of Record.Validate.
var ErrInvalidRecord = errors.New("invalid feedback record")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record is one labelled example.
type Record struct {
	// Model and Version name the model the example is for and the version
	// that served it (or, for an example sent with its inputs, the version
	// the request was addressed to).
	Model, Version string
	// RequestID is the id of the inference request the label is for, ""
	// for an example sent with its inputs.
	RequestID string
	// Inputs is the feature vector (one row of the model's FP32 input),
	// after the personal data rules were applied.
	Inputs []float32
	// Label is the class index.
	Label int32
	// Time is when the label arrived. Append fills in a zero Time; Read
	// returns it in UTC with nanosecond precision.
	Time time.Time
}

// Validate reports what is wrong with r: names that are not valid model
// names and versions, an over-long or non-UTF-8 request id, a negative
// label, no inputs or too many, a non-finite input, or a time outside
// what a Unix nanosecond count holds. Errors wrap ErrInvalidRecord.
func (r *Record) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRecord, fmt.Sprintf(format, a...))
	}
	if !models.ValidName(r.Model) {
		return bad("model name %q is not valid", r.Model)
	}
	if !models.ValidVersion(r.Version) {
		return bad("model %q: version %q is not valid", r.Model, r.Version)
	}
	if len(r.RequestID) > MaxRequestIDBytes || !utf8.ValidString(r.RequestID) {
		return bad("request id: want at most %d bytes of UTF-8", MaxRequestIDBytes)
	}
	if r.Label < 0 {
		return bad("label %d is negative", r.Label)
	}
	if len(r.Inputs) == 0 || len(r.Inputs) > MaxInputs {
		return bad("%d inputs: want 1 to %d", len(r.Inputs), MaxInputs)
	}
	for i, v := range r.Inputs {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return bad("input %d is %v", i, v)
		}
	}
	if y := r.Time.Year(); y < 1678 || y > 2261 {
		return bad("time %v is outside 1678..2261", r.Time)
	}
	return nil
}

// appendFrame appends r as one frame: payload length and CRC-32C (of the
// length bytes and the payload), both little-endian uint32, then the
// payload. r must be valid.
//
// Payload: format byte (1), time as int64 Unix nanoseconds little-endian,
// model, version and request id each as a uvarint length and bytes, the
// label as a uvarint, the input count as a uvarint, the inputs as
// little-endian float32.
func appendFrame(dst []byte, r *Record) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = append(dst, recordFormat)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Time.UnixNano()))
	for _, s := range []string{r.Model, r.Version, r.RequestID} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.AppendUvarint(dst, uint64(r.Label))
	dst = binary.AppendUvarint(dst, uint64(len(r.Inputs)))
	for _, v := range r.Inputs {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
	}
	n := len(dst) - start - frameHeader
	binary.LittleEndian.PutUint32(dst[start:], uint32(n))
	crc := crc32.Update(crc32.Checksum(dst[start:start+4], castagnoli), castagnoli, dst[start+frameHeader:])
	binary.LittleEndian.PutUint32(dst[start+4:], crc)
	return dst
}

// frameLen reads a frame header: the payload length, and the CRC.
func frameLen(h []byte) (n int, crc uint32, err error) {
	l := binary.LittleEndian.Uint32(h)
	if l == 0 || l > maxPayload {
		return 0, 0, fmt.Errorf("%w: frame length %d is outside 1..%d", ErrCorrupt, l, maxPayload)
	}
	return int(l), binary.LittleEndian.Uint32(h[4:]), nil
}

// decodeFrame decodes one whole frame (header and payload).
func decodeFrame(b []byte) (Record, error) {
	if len(b) < frameHeader {
		return Record{}, fmt.Errorf("%w: %d bytes is shorter than a frame header", ErrCorrupt, len(b))
	}
	n, crc, err := frameLen(b)
	if err != nil {
		return Record{}, err
	}
	if len(b) != frameHeader+n {
		return Record{}, fmt.Errorf("%w: frame of %d bytes claims a payload of %d", ErrCorrupt, len(b), n)
	}
	if got := crc32.Update(crc32.Checksum(b[:4], castagnoli), castagnoli, b[frameHeader:]); got != crc {
		return Record{}, fmt.Errorf("%w: checksum %08x, frame says %08x", ErrCorrupt, got, crc)
	}
	return decodePayload(b[frameHeader:])
}

// decodePayload decodes a payload whose checksum was verified. It still
// checks every field: a checksum does not make bytes well formed.
func decodePayload(b []byte) (Record, error) {
	bad := func(format string, a ...any) (Record, error) {
		return Record{}, fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
	}
	if len(b) < 9 || b[0] != recordFormat {
		return bad("payload does not start with format %d and a time", recordFormat)
	}
	var r Record
	r.Time = time.Unix(0, int64(binary.LittleEndian.Uint64(b[1:]))).UTC()
	b = b[9:]
	var strs [3]string
	for i, limit := range []int{128, 64, MaxRequestIDBytes} {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(limit) || l > uint64(len(b)-k) {
			return bad("string field %d: bad length", i)
		}
		strs[i] = string(b[k : k+int(l)])
		b = b[k+int(l):]
	}
	r.Model, r.Version, r.RequestID = strs[0], strs[1], strs[2]
	label, k := binary.Uvarint(b)
	if k <= 0 || label > math.MaxInt32 {
		return bad("bad label")
	}
	r.Label = int32(label)
	b = b[k:]
	count, k := binary.Uvarint(b)
	if k <= 0 || count == 0 || count > MaxInputs || uint64(len(b)-k) != 4*count {
		return bad("input count does not match the %d bytes left", len(b)-max(k, 0))
	}
	b = b[k:]
	r.Inputs = make([]float32, count)
	for i := range r.Inputs {
		r.Inputs[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	if err := r.Validate(); err != nil {
		return bad("%v", err)
	}
	return r, nil
}
