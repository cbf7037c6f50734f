package ort

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	onnx "github.com/yalue/onnxruntime_go"
)

// TestCUDAV1Layout compiles a probe against the onnxruntime_c_api.h that
// onnxruntime_go ships and checks cudav1.go's declarations against it, and
// checks that onnxruntime_go's SessionOptions is still a single pointer.
// A dependency upgrade that moves anything fails here, not on a GPU.
func TestCUDAV1Layout(t *testing.T) {
	typ := reflect.TypeFor[onnx.SessionOptions]()
	if typ.NumField() != 1 || typ.Field(0).Type.Kind() != reflect.Pointer {
		t.Fatalf("onnxruntime_go's SessionOptions is %v; sessionOptionsPtr assumes one pointer field", typ)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/yalue/onnxruntime_go").Output()
	if err != nil {
		t.Fatalf("go list onnxruntime_go: %v", err)
	}
	inc := strings.TrimSpace(string(out))
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "probe.c")
	probe := `#include <stdio.h>
#include <stddef.h>
#include "onnxruntime_c_api.h"
#define IDX(f) (offsetof(OrtApi, f) / sizeof(void*))
#define OFF(f) offsetof(OrtCUDAProviderOptions, f)
int main(void) {
	printf("%d %zu %zu %zu %zu", ORT_API_VERSION, IDX(GetErrorMessage), IDX(ReleaseStatus), IDX(SessionOptionsAppendExecutionProvider_CUDA), sizeof(OrtCUDAProviderOptions));
	printf(" %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\n", OFF(device_id), OFF(cudnn_conv_algo_search), OFF(gpu_mem_limit), OFF(arena_extend_strategy),
		OFF(do_copy_in_default_stream), OFF(has_user_compute_stream), OFF(user_compute_stream), OFF(default_memory_arena_cfg),
		OFF(tunable_op_enable), OFF(tunable_op_tuning_enable), OFF(tunable_op_max_tuning_duration_ms));
	return 0;
}
`
	if err := os.WriteFile(src, []byte(probe), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "probe")
	if b, err := exec.Command(cc, "-I", inc, "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("compiling the probe against %s: %v\n%s", inc, err, b)
	}
	b, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("probe printed %q", b)
		}
		got = append(got, n)
	}
	if !slices.Equal(got, cudaV1Layout) {
		t.Fatalf("onnxruntime_c_api.h says %v, cudav1.go assumes %v", got, cudaV1Layout)
	}
}
