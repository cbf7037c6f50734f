package federated

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

// coreIDXImages encodes an IDX3 images file.
func coreIDXImages(magic uint32, n, rows, cols uint32, pixels []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	b = binary.BigEndian.AppendUint32(b, n)
	b = binary.BigEndian.AppendUint32(b, rows)
	b = binary.BigEndian.AppendUint32(b, cols)
	return append(b, pixels...)
}

// coreIDXLabels encodes an IDX1 labels file.
func coreIDXLabels(magic uint32, n uint32, labels []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	b = binary.BigEndian.AppendUint32(b, n)
	return append(b, labels...)
}

func coreGzip(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestLoadIDX(t *testing.T) {
	// Three 2x2 images, labels 0, 3, 1.
	pixels := []byte{0, 255, 51, 102, 1, 2, 3, 4, 255, 255, 0, 0}
	images := coreIDXImages(IDXImagesMagic, 3, 2, 2, pixels)
	labels := coreIDXLabels(IDXLabelsMagic, 3, []byte{0, 3, 1})

	for name, in := range map[string][2][]byte{
		"plain":       {images, labels},
		"gzip":        {coreGzip(images), coreGzip(labels)},
		"gzip images": {coreGzip(images), labels},
		"gzip labels": {images, coreGzip(labels)},
	} {
		t.Run(name, func(t *testing.T) {
			d, err := LoadIDX(bytes.NewReader(in[0]), bytes.NewReader(in[1]))
			if err != nil {
				t.Fatal(err)
			}
			if d.N != 3 || d.Dim != 4 || d.Classes != 4 {
				t.Fatalf("N, Dim, Classes = %d, %d, %d; want 3, 4, 4", d.N, d.Dim, d.Classes)
			}
			if err := d.Validate(); err != nil {
				t.Fatal(err)
			}
			for i, p := range pixels {
				if want := float32(p) / 255; d.X[i] != want {
					t.Errorf("X[%d] = %v, want %v", i, d.X[i], want)
				}
			}
			if d.X[1] != 1 || d.X[2] != 0.2 {
				t.Errorf("255 and 51 scale to %v and %v, want 1 and 0.2", d.X[1], d.X[2])
			}
			if want := []int32{0, 3, 1}; !equalInt32(d.Y, want) {
				t.Errorf("Y = %v, want %v", d.Y, want)
			}
		})
	}
}

func equalInt32(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLoadIDXRejects(t *testing.T) {
	px := make([]byte, 8)
	okImages := coreIDXImages(IDXImagesMagic, 2, 2, 2, px)
	okLabels := coreIDXLabels(IDXLabelsMagic, 2, []byte{1, 0})
	corrupt := coreGzip(okImages)
	corrupt[len(corrupt)-6] ^= 0xff // CRC-32 of the content
	tests := []struct {
		name           string
		images, labels []byte
		want           string
	}{
		{"image magic", coreIDXImages(0x00000801, 2, 2, 2, px), okLabels, "images: invalid IDX data: magic number 0x00000801"},
		{"image magic float", coreIDXImages(0x00000d03, 2, 2, 2, px), okLabels, "want 0x00000803"},
		{"label magic", okImages, coreIDXLabels(IDXImagesMagic, 2, []byte{1, 0}), "labels: invalid IDX data: magic number 0x00000803"},
		{"count mismatch", okImages, coreIDXLabels(IDXLabelsMagic, 3, []byte{1, 0, 1}), "3 labels for 2 images"},
		{"zero images", coreIDXImages(IDXImagesMagic, 0, 2, 2, nil), coreIDXLabels(IDXLabelsMagic, 0, nil), "want all positive"},
		{"zero rows", coreIDXImages(IDXImagesMagic, 2, 0, 2, nil), okLabels, "want all positive"},
		{"too many pixels", coreIDXImages(IDXImagesMagic, 60000, 1000, 1000, px), okLabels, "exceed 100000000 pixels"},
		{"huge dims", coreIDXImages(IDXImagesMagic, math.MaxUint32, math.MaxUint32, math.MaxUint32, px), okLabels, "exceed"},
		{"truncated images", coreIDXImages(IDXImagesMagic, 2, 2, 2, px[:7]), okLabels, "images: " + ErrInvalidIDX.Error() + ": data ends after 7 of 8 bytes"},
		{"trailing images", coreIDXImages(IDXImagesMagic, 2, 2, 2, append(px, 0)), okLabels, "images: " + ErrInvalidIDX.Error() + ": data continues"},
		{"truncated labels", okImages, coreIDXLabels(IDXLabelsMagic, 2, []byte{1}), "labels: " + ErrInvalidIDX.Error() + ": data ends after 1 of 2"},
		{"trailing labels", okImages, coreIDXLabels(IDXLabelsMagic, 2, []byte{1, 0, 9}), "labels: " + ErrInvalidIDX.Error() + ": data continues"},
		{"short image header", okImages[:10], okLabels, "images: " + ErrInvalidIDX.Error() + ": header is shorter than 16 bytes"},
		{"empty labels", okImages, nil, "labels: " + ErrInvalidIDX.Error() + ": header is shorter than 8 bytes"},
		{"corrupt gzip", corrupt, okLabels, "checksum"},
		{"truncated gzip", coreGzip(okImages)[:20], okLabels, "images: " + ErrInvalidIDX.Error()},
		{"gzip magic only", []byte{0x1f, 0x8b}, okLabels, "gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := LoadIDX(bytes.NewReader(tt.images), bytes.NewReader(tt.labels))
			if err == nil {
				t.Fatalf("no error; got %d samples", d.N)
			}
			if !errors.Is(err, ErrInvalidIDX) {
				t.Errorf("error %q does not wrap ErrInvalidIDX", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	if _, err := LoadIDX(nil, bytes.NewReader(okLabels)); !errors.Is(err, ErrInvalidIDX) {
		t.Errorf("nil reader: error %v", err)
	}
}

type coreFailingReader struct{ err error }

func (r coreFailingReader) Read([]byte) (int, error) { return 0, r.err }

func TestLoadIDXReaderError(t *testing.T) {
	boom := errors.New("disk on fire")
	okImages := coreIDXImages(IDXImagesMagic, 1, 1, 1, []byte{7})
	// A reader that fails after the header.
	failing := io.MultiReader(bytes.NewReader(okImages[:16]), coreFailingReader{boom})
	_, err := LoadIDX(failing, bytes.NewReader(coreIDXLabels(IDXLabelsMagic, 1, []byte{0})))
	if !errors.Is(err, boom) || errors.Is(err, ErrInvalidIDX) {
		t.Errorf("error %v, want the reader's error and not ErrInvalidIDX", err)
	}
	_, err = LoadIDX(bytes.NewReader(okImages), coreFailingReader{boom})
	if !errors.Is(err, boom) {
		t.Errorf("labels reader failing at once: error %v, want the reader's error", err)
	}
}

// FuzzLoadIDX feeds arbitrary image and label files to LoadIDX: it must
// not panic, and what it accepts must be a valid data set of the
// announced size with pixels in [0, 1].
func FuzzLoadIDX(f *testing.F) {
	f.Add(coreIDXImages(IDXImagesMagic, 2, 1, 2, []byte{0, 128, 255, 3}), coreIDXLabels(IDXLabelsMagic, 2, []byte{1, 9}))
	f.Add(coreGzip(coreIDXImages(IDXImagesMagic, 1, 1, 1, []byte{9})), coreGzip(coreIDXLabels(IDXLabelsMagic, 1, []byte{0})))
	f.Fuzz(func(t *testing.T, images, labels []byte) {
		d, err := LoadIDX(bytes.NewReader(images), bytes.NewReader(labels))
		if err != nil {
			if d != nil {
				t.Fatal("data set returned with an error")
			}
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("accepted data set is invalid: %v", err)
		}
		if d.N < 1 || d.N*d.Dim > MaxIDXPixels {
			t.Fatalf("accepted %d samples of %d values", d.N, d.Dim)
		}
		for i, v := range d.X {
			if v < 0 || v > 1 {
				t.Fatalf("X[%d] = %v, outside [0, 1]", i, v)
			}
		}
		maxLabel := int32(0)
		for _, y := range d.Y {
			maxLabel = max(maxLabel, y)
		}
		if d.Classes != int(maxLabel)+1 {
			t.Fatalf("Classes %d with largest label %d", d.Classes, maxLabel)
		}
	})
}

func TestDatasetValidate(t *testing.T) {
	tests := []struct {
		name string
		d    *Dataset
		want string // "" for valid
	}{
		{"valid", &Dataset{X: []float32{1, 2, 3, 4}, Y: []int32{0, 1}, N: 2, Dim: 2, Classes: 2}, ""},
		{"empty", &Dataset{Dim: 3, Classes: 1}, ""},
		{"nil", nil, "nil"},
		{"negative N", &Dataset{N: -1, Dim: 1, Classes: 1}, "N is -1"},
		{"zero Dim", &Dataset{Classes: 1}, "Dim is 0"},
		{"zero Classes", &Dataset{Dim: 1}, "Classes is 0"},
		{"short X", &Dataset{X: []float32{1}, Y: []int32{0, 0}, N: 2, Dim: 1, Classes: 1}, "X has 1 values"},
		{"overflowing N*Dim", &Dataset{N: math.MaxInt / 2, Dim: 3, Classes: 1}, "want N*Dim"},
		{"short Y", &Dataset{X: []float32{1, 2}, Y: []int32{0}, N: 2, Dim: 1, Classes: 1}, "Y has 1 labels"},
		{"label too large", &Dataset{X: []float32{1, 2}, Y: []int32{0, 2}, N: 2, Dim: 1, Classes: 2}, "label 1 is 2"},
		{"negative label", &Dataset{X: []float32{1, 2}, Y: []int32{-1, 0}, N: 2, Dim: 1, Classes: 2}, "label 0 is -1"},
		{"NaN feature", &Dataset{X: []float32{1, 2, float32(math.NaN()), 4}, Y: []int32{0, 0}, N: 2, Dim: 2, Classes: 1}, "sample 1 feature 0 is NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.d.Validate()
			if tt.want == "" {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestSubset(t *testing.T) {
	d := &Dataset{X: []float32{0, 1, 10, 11, 20, 21}, Y: []int32{0, 1, 2}, N: 3, Dim: 2, Classes: 3}
	tests := []struct {
		name  string
		idx   []int
		wantX []float32
		wantY []int32
	}{
		{"reorder", []int{2, 0}, []float32{20, 21, 0, 1}, []int32{2, 0}},
		{"repeat", []int{1, 1}, []float32{10, 11, 10, 11}, []int32{1, 1}},
		{"out of range skipped", []int{-1, 3, 1, 100}, []float32{10, 11}, []int32{1}},
		{"empty", nil, []float32{}, []int32{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := d.Subset(tt.idx)
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			if s.N != len(tt.wantY) || s.Dim != 2 || s.Classes != 3 {
				t.Errorf("N, Dim, Classes = %d, %d, %d", s.N, s.Dim, s.Classes)
			}
			if len(s.X) != len(tt.wantX) {
				t.Fatalf("X = %v, want %v", s.X, tt.wantX)
			}
			for i := range s.X {
				if s.X[i] != tt.wantX[i] {
					t.Fatalf("X = %v, want %v", s.X, tt.wantX)
				}
			}
			if !equalInt32(s.Y, tt.wantY) {
				t.Errorf("Y = %v, want %v", s.Y, tt.wantY)
			}
		})
	}
	s := d.Subset([]int{0})
	s.X[0] = 99
	if d.X[0] != 0 {
		t.Error("Subset shares memory with the original")
	}
	if s := (*Dataset)(nil).Subset([]int{0}); s == nil || s.N != 0 {
		t.Errorf("nil.Subset = %+v, want an empty data set", s)
	}
}
