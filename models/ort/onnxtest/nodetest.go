package onnxtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/petrel-mesh/petrel/models"
)

// NodeTestDir is where Debian's libonnx-testdata package puts the ONNX
// project's per-operator tests: <dir>/<test>/model.onnx and
// <dir>/<test>/test_data_set_0/{input,output}_N.pb.
const NodeTestDir = "/usr/share/libonnx-testdata/data/node"

// ErrNoTestdata is returned when the node tests are not installed.
var ErrNoTestdata = errors.New("ONNX node tests not found under " + NodeTestDir + ": install Debian package libonnx-testdata (make setup)")

// Case is one published node test: the model, its inputs and the outputs
// it must produce, named as the model names them.
type Case struct {
	Name    string
	Model   []byte
	Inputs  []models.Tensor
	Outputs []models.Tensor
}

// LoadNodeTest reads test_data_set_0 of the named node test (e.g.
// "test_where_example") from NodeTestDir.
func LoadNodeTest(name string) (Case, error) {
	return LoadNodeTestFrom(NodeTestDir, name)
}

// LoadNodeTestFrom is LoadNodeTest with another root directory.
func LoadNodeTestFrom(root, name string) (Case, error) {
	c := Case{Name: name}
	if _, err := os.Stat(root); err != nil {
		return c, fmt.Errorf("%w (%v)", ErrNoTestdata, err)
	}
	dir := filepath.Join(root, name)
	var err error
	if c.Model, err = os.ReadFile(filepath.Join(dir, "model.onnx")); err != nil {
		return c, fmt.Errorf("onnxtest: %w", err)
	}
	read := func(prefix string) ([]models.Tensor, error) {
		var ts []models.Tensor
		for i := 0; ; i++ {
			p := filepath.Join(dir, "test_data_set_0", fmt.Sprintf("%s_%d.pb", prefix, i))
			b, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				return ts, nil
			}
			if err != nil {
				return nil, fmt.Errorf("onnxtest: %w", err)
			}
			t, err := DecodeTensor(b)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			ts = append(ts, t)
		}
	}
	if c.Inputs, err = read("input"); err != nil {
		return c, err
	}
	if c.Outputs, err = read("output"); err != nil {
		return c, err
	}
	return c, nil
}
