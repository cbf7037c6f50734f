package ort

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// The few pieces of onnxruntime_c_api.h this file needs, declared here
// (onnxruntime_go's copy of the header is not on our include path).
// TestCUDAV1Layout compiles a probe against that header and checks every
// number below.
typedef struct OrtStatus OrtStatus;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtApiBase {
	const void* (*GetApi)(uint32_t version);
	const char* (*GetVersionString)(void);
} OrtApiBase;

// OrtCUDAProviderOptions, the "V1" CUDA options struct (64 bytes).
typedef struct petrel_cuda_v1 {
	int device_id;
	int cudnn_conv_algo_search;   // OrtCudnnConvAlgoSearch: 0 exhaustive
	size_t gpu_mem_limit;         // SIZE_MAX: no limit
	int arena_extend_strategy;    // 0 kNextPowerOfTwo, 1 kSameAsRequested
	int do_copy_in_default_stream;
	int has_user_compute_stream;
	void* user_compute_stream;
	void* default_memory_arena_cfg;
	int tunable_op_enable;
	int tunable_op_tuning_enable;
	int tunable_op_max_tuning_duration_ms;
} petrel_cuda_v1;

enum {
	PETREL_ORT_API_VERSION = 24,     // ORT_API_VERSION of onnxruntime_go v1.27
	PETREL_IDX_GET_ERROR_MESSAGE = 2,
	PETREL_IDX_RELEASE_STATUS = 93,
	PETREL_IDX_APPEND_CUDA_V1 = 152, // SessionOptionsAppendExecutionProvider_CUDA
};

typedef const char* (*get_error_message_fn)(const OrtStatus*);
typedef void (*release_status_fn)(OrtStatus*);
typedef OrtStatus* (*append_cuda_fn)(OrtSessionOptions*, const petrel_cuda_v1*);

// petrel_append_cuda_v1 appends the CUDA provider with the V1 API of the
// library at path (already loaded). It returns 0 on success; otherwise 1
// and, in *err, a message the caller frees (NULL if even that failed).
static int petrel_append_cuda_v1(const char* path, OrtSessionOptions* so, int device, size_t mem_limit, int arena, char** err) {
	*err = NULL;
	void* h = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
	if (h == NULL) {
		*err = strdup("the ONNX Runtime library is not loaded");
		return 1;
	}
	const OrtApiBase* (*get_base)(void) = (const OrtApiBase* (*)(void))dlsym(h, "OrtGetApiBase");
	if (get_base == NULL) {
		dlclose(h);
		*err = strdup("OrtGetApiBase not found");
		return 1;
	}
	const void* const* api = (const void* const*)get_base()->GetApi(PETREL_ORT_API_VERSION);
	dlclose(h); // the library stays loaded: onnxruntime_go holds it
	if (api == NULL) {
		*err = strdup("the library does not support ORT API version 24");
		return 1;
	}
	petrel_cuda_v1 o = {0};
	o.device_id = device;
	o.gpu_mem_limit = mem_limit;
	o.arena_extend_strategy = arena;
	o.do_copy_in_default_stream = 1;
	OrtStatus* st = ((append_cuda_fn)api[PETREL_IDX_APPEND_CUDA_V1])(so, &o);
	if (st == NULL) {
		return 0;
	}
	*err = strdup(((get_error_message_fn)api[PETREL_IDX_GET_ERROR_MESSAGE])(st));
	((release_status_fn)api[PETREL_IDX_RELEASE_STATUS])(st);
	return 1;
}
*/
import "C"

import (
	"errors"
	"math"
	"unsafe"

	onnx "github.com/yalue/onnxruntime_go"
)

// ONNX Runtime has two ways to add the CUDA provider. onnxruntime_go uses
// the second (CreateCUDAProviderOptions and
// SessionOptionsAppendExecutionProvider_CUDA_V2), which a library built
// without CUDA refuses ("CUDA execution provider is not enabled in this
// build") even when the CUDA provider library sits beside it and would
// load: the CPU core of the ONNX Runtime 1.29 CUDA 13 build (npm
// com.github.asus4.onnxruntime) is such a library. The first
// (SessionOptionsAppendExecutionProvider_CUDA with the OrtCUDAProviderOptions
// struct) loads libonnxruntime_providers_cuda.so in every build and takes
// the options Petrel sets (device, memory limit, arena strategy), so
// appendCUDA falls back to it.

// cudaV1Layout is what cudav1.go assumes of onnxruntime_c_api.h, for
// TestCUDAV1Layout: the API version, the OrtApi indices of GetErrorMessage,
// ReleaseStatus and SessionOptionsAppendExecutionProvider_CUDA, the size
// of OrtCUDAProviderOptions and the offsets of its fields in order.
var cudaV1Layout = []int{
	C.PETREL_ORT_API_VERSION, C.PETREL_IDX_GET_ERROR_MESSAGE, C.PETREL_IDX_RELEASE_STATUS, C.PETREL_IDX_APPEND_CUDA_V1,
	C.sizeof_petrel_cuda_v1,
	int(unsafe.Offsetof(C.petrel_cuda_v1{}.device_id)), int(unsafe.Offsetof(C.petrel_cuda_v1{}.cudnn_conv_algo_search)),
	int(unsafe.Offsetof(C.petrel_cuda_v1{}.gpu_mem_limit)), int(unsafe.Offsetof(C.petrel_cuda_v1{}.arena_extend_strategy)),
	int(unsafe.Offsetof(C.petrel_cuda_v1{}.do_copy_in_default_stream)), int(unsafe.Offsetof(C.petrel_cuda_v1{}.has_user_compute_stream)),
	int(unsafe.Offsetof(C.petrel_cuda_v1{}.user_compute_stream)), int(unsafe.Offsetof(C.petrel_cuda_v1{}.default_memory_arena_cfg)),
	int(unsafe.Offsetof(C.petrel_cuda_v1{}.tunable_op_enable)), int(unsafe.Offsetof(C.petrel_cuda_v1{}.tunable_op_tuning_enable)),
	int(unsafe.Offsetof(C.petrel_cuda_v1{}.tunable_op_max_tuning_duration_ms)),
}

// sessionOptionsPtr is the OrtSessionOptions* inside onnxruntime_go's
// SessionOptions, whose only field it is (checked by TestCUDAV1Layout).
func sessionOptionsPtr(so *onnx.SessionOptions) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(so))
}

// appendCUDAV1 adds the CUDA provider to so with the V1 API.
func (o Options) appendCUDAV1(so *onnx.SessionOptions) error {
	runtimeState.mu.Lock()
	path := runtimeState.path
	runtimeState.mu.Unlock()
	if path == "" {
		return errors.New("ONNX Runtime is not initialised")
	}
	limit := C.size_t(math.MaxUint)
	if o.GPUMemLimit > 0 {
		limit = C.size_t(o.GPUMemLimit)
	}
	arena := C.int(0)
	if o.ArenaExtendStrategy == ArenaSameAsRequested {
		arena = 1
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg *C.char
	if C.petrel_append_cuda_v1(cpath, (*C.OrtSessionOptions)(sessionOptionsPtr(so)), C.int(o.DeviceID), limit, arena, &msg) == 0 {
		return nil
	}
	if msg == nil {
		return errors.New("the V1 CUDA provider API failed (no message: out of memory)")
	}
	defer C.free(unsafe.Pointer(msg))
	return errors.New(C.GoString(msg))
}
