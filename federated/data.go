package federated

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// Dataset is a labelled classification data set held in memory.
//
// Row i is X[i*Dim : (i+1)*Dim] with label Y[i], a class index in
// [0, Classes). Binary (logistic) data has Classes 2 and labels 0 or 1.
type Dataset struct {
	X       []float32 // N*Dim features, row-major
	Y       []int32   // N class indices
	N       int       // number of samples
	Dim     int       // features per sample
	Classes int       // number of classes; every label is below it
}

// Validate checks that the sizes agree (len(X) = N*Dim, len(Y) = N), Dim
// and Classes are positive, every label is in [0, Classes) and every
// feature is finite.
func (d *Dataset) Validate() error {
	if d == nil {
		return errors.New("dataset: nil")
	}
	switch {
	case d.N < 0:
		return fmt.Errorf("dataset: N is %d", d.N)
	case d.Dim < 1:
		return fmt.Errorf("dataset: Dim is %d, want at least 1", d.Dim)
	case d.Classes < 1:
		return fmt.Errorf("dataset: Classes is %d, want at least 1", d.Classes)
	case d.N > math.MaxInt/d.Dim || len(d.X) != d.N*d.Dim:
		return fmt.Errorf("dataset: X has %d values, want N*Dim = %d*%d", len(d.X), d.N, d.Dim)
	case len(d.Y) != d.N:
		return fmt.Errorf("dataset: Y has %d labels, want N = %d", len(d.Y), d.N)
	}
	for i, y := range d.Y {
		if y < 0 || int(y) >= d.Classes {
			return fmt.Errorf("dataset: label %d is %d, want 0..%d", i, y, d.Classes-1)
		}
	}
	if i := firstNonFinite(d.X); i >= 0 {
		return fmt.Errorf("dataset: sample %d feature %d is %v", i/d.Dim, i%d.Dim, d.X[i])
	}
	return nil
}

// Subset returns a new data set holding the rows idx names, in that order
// (an index may repeat). Indices outside [0, N) are skipped, so the result
// has fewer rows than len(idx) when some are out of range. The result
// copies the rows and keeps Dim and Classes; it shares no memory with d.
// A nil d gives an empty data set.
func (d *Dataset) Subset(idx []int) *Dataset {
	if d == nil {
		return &Dataset{}
	}
	n := 0
	for _, i := range idx {
		if i >= 0 && i < d.N {
			n++
		}
	}
	s := &Dataset{X: make([]float32, 0, n*d.Dim), Y: make([]int32, 0, n), N: n, Dim: d.Dim, Classes: d.Classes}
	for _, i := range idx {
		if i >= 0 && i < d.N && (i+1)*d.Dim <= len(d.X) && i < len(d.Y) {
			s.X = append(s.X, d.X[i*d.Dim:(i+1)*d.Dim]...)
			s.Y = append(s.Y, d.Y[i])
		}
	}
	s.N = len(s.Y)
	return s
}

// IDX format limits and magic numbers.
const (
	// IDXImagesMagic starts an IDX file of unsigned bytes with 3
	// dimensions (images: count, rows, columns).
	IDXImagesMagic = 0x00000803
	// IDXLabelsMagic starts an IDX file of unsigned bytes with 1
	// dimension (labels: count).
	IDXLabelsMagic = 0x00000801
	// MaxIDXPixels bounds count*rows*columns of an images file.
	MaxIDXPixels = 100_000_000
)

// ErrInvalidIDX wraps every error LoadIDX returns for malformed input.
var ErrInvalidIDX = errors.New("invalid IDX data")

// idxError reports malformed input in file ("images" or "labels", or ""
// for neither).
func idxError(file, format string, a ...any) error {
	err := fmt.Errorf("%w: %s", ErrInvalidIDX, fmt.Sprintf(format, a...))
	if file != "" {
		err = fmt.Errorf("%s: %w", file, err)
	}
	return err
}

// LoadIDX reads a data set in the IDX format of MNIST and Fashion-MNIST:
// images is an IDX3 file of uint8 pixels (magic 0x00000803, then count,
// rows and columns as big-endian uint32), labels an IDX1 file of uint8
// labels (magic 0x00000801, then count). Either may be gzip-compressed;
// that is detected from its first bytes.
//
// Pixels are scaled to [0, 1] (p/255); Dim is rows*columns and Classes is
// the largest label plus one. Both files must hold exactly the samples
// their headers announce, the counts must match and be positive, and
// count*rows*columns may not exceed MaxIDXPixels. Malformed input gives an
// error wrapping ErrInvalidIDX; a failing reader's error is wrapped as it
// is.
func LoadIDX(images, labels io.Reader) (*Dataset, error) {
	if images == nil || labels == nil {
		return nil, idxError("", "nil reader")
	}
	img, err := maybeGunzip(images)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	lab, err := maybeGunzip(labels)
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}

	var ih [16]byte
	if err := readHeader(img, ih[:]); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	if m := binary.BigEndian.Uint32(ih[0:]); m != IDXImagesMagic {
		return nil, idxError("images", "magic number %#08x, want %#08x (IDX3 of unsigned bytes)", m, IDXImagesMagic)
	}
	n := uint64(binary.BigEndian.Uint32(ih[4:]))
	rows := uint64(binary.BigEndian.Uint32(ih[8:]))
	cols := uint64(binary.BigEndian.Uint32(ih[12:]))
	if n == 0 || rows == 0 || cols == 0 {
		return nil, idxError("images", "dimensions %dx%dx%d, want all positive", n, rows, cols)
	}
	dim := rows * cols // < 2^64: both are below 2^32
	if dim > MaxIDXPixels || n > MaxIDXPixels/dim {
		return nil, idxError("images", "%d images of %dx%d exceed %d pixels", n, rows, cols, MaxIDXPixels)
	}

	var lh [8]byte
	if err := readHeader(lab, lh[:]); err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	if m := binary.BigEndian.Uint32(lh[0:]); m != IDXLabelsMagic {
		return nil, idxError("labels", "magic number %#08x, want %#08x (IDX1 of unsigned bytes)", m, IDXLabelsMagic)
	}
	if ln := uint64(binary.BigEndian.Uint32(lh[4:])); ln != n {
		return nil, idxError("labels", "%d labels for %d images", ln, n)
	}

	pix, err := readBody(img, int64(n*dim))
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	ys, err := readBody(lab, int64(n))
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}

	d := &Dataset{X: make([]float32, len(pix)), Y: make([]int32, len(ys)), N: int(n), Dim: int(dim)}
	var scale [256]float32
	for i := range scale {
		scale[i] = float32(i) / 255
	}
	for i, p := range pix {
		d.X[i] = scale[p]
	}
	maxLabel := 0
	for i, y := range ys {
		d.Y[i] = int32(y)
		maxLabel = max(maxLabel, int(y))
	}
	d.Classes = maxLabel + 1
	return d, nil
}

// maybeGunzip returns a reader of r's content, decompressed when r starts
// with the gzip magic bytes 1f 8b.
func maybeGunzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, idxError("", "gzip: %v", err)
		}
		return zr, nil
	}
	return br, nil
}

// readHeader fills h, reporting a short read as malformed input.
func readHeader(r io.Reader, h []byte) error {
	if _, err := io.ReadFull(r, h); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return idxError("", "header is shorter than %d bytes", len(h))
		}
		return wrapReadError(err)
	}
	return nil
}

// readBody reads exactly size bytes and checks nothing follows. The buffer
// grows as data arrives, so a header that lies about its size costs no
// more memory than the data actually sent.
func readBody(r io.Reader, size int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, size+1))
	if err != nil {
		return nil, wrapReadError(err)
	}
	switch {
	case int64(len(b)) < size:
		return nil, idxError("", "data ends after %d of %d bytes", len(b), size)
	case int64(len(b)) > size:
		return nil, idxError("", "data continues after the %d bytes the header announces", size)
	}
	return b, nil
}

// wrapReadError marks gzip corruption and truncation as malformed input
// and passes other read errors (from the caller's reader) through.
func wrapReadError(err error) error {
	var corrupt flate.CorruptInputError
	if errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &corrupt) {
		return idxError("", "%v", err)
	}
	return err
}

// FashionMNISTDir is where Debian's dataset-fashion-mnist package installs
// the Fashion-MNIST IDX files.
const FashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// FashionMNISTClasses is the number of Fashion-MNIST classes.
const FashionMNISTClasses = 10

// LoadFashionMNIST loads the Fashion-MNIST training (60000) and test
// (10000) sets of 28x28 images from dir (FashionMNISTDir when dir is
// empty): train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each with or without
// a .gz suffix. Both sets get Classes = FashionMNISTClasses; a label of 10
// or more is an error.
func LoadFashionMNIST(dir string) (train, test *Dataset, err error) {
	if dir == "" {
		dir = FashionMNISTDir
	}
	train, err = loadIDXFiles(dir, "train")
	if err != nil {
		return nil, nil, err
	}
	test, err = loadIDXFiles(dir, "t10k")
	if err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

func loadIDXFiles(dir, prefix string) (*Dataset, error) {
	img, err := openMaybeGz(filepath.Join(dir, prefix+"-images-idx3-ubyte"))
	if err != nil {
		return nil, fmt.Errorf("fashion-mnist: %w (install Debian package dataset-fashion-mnist)", err)
	}
	defer img.Close()
	lab, err := openMaybeGz(filepath.Join(dir, prefix+"-labels-idx1-ubyte"))
	if err != nil {
		return nil, fmt.Errorf("fashion-mnist: %w (install Debian package dataset-fashion-mnist)", err)
	}
	defer lab.Close()
	d, err := LoadIDX(bufio.NewReaderSize(img, 1<<16), bufio.NewReaderSize(lab, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("fashion-mnist %s in %s: %w", prefix, dir, err)
	}
	if d.Classes > FashionMNISTClasses {
		return nil, fmt.Errorf("fashion-mnist %s in %s: %w: label %d, want 0..%d",
			prefix, dir, ErrInvalidIDX, d.Classes-1, FashionMNISTClasses-1)
	}
	d.Classes = FashionMNISTClasses
	return d, nil
}

// openMaybeGz opens path+".gz", or path when that does not exist.
func openMaybeGz(path string) (*os.File, error) {
	f, err := os.Open(path + ".gz")
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return f, err
	}
	return os.Open(path)
}
