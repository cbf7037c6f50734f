// Package ort runs ONNX models with ONNX Runtime, through
// github.com/yalue/onnxruntime_go, behind the models.Session interface.
//
// Use it in three steps:
//
//  1. Init(path) once per process, with "" to let FindLibrary locate
//     libonnxruntime.so (--ort-lib, then $PETREL_ORT_LIB, then the
//     repository's .cache/ort/, then ~/.cache/petrel/ort/);
//  2. Load (or LoadFile) the model bytes with Options, which reads the
//     signature from the graph and creates the ONNX Runtime session;
//  3. Run it from any number of goroutines, then Close it, which waits
//     for runs in flight.
//
// Errors callers act on are sentinels: ErrLibraryNotFound (its message
// says how to install the library), ErrInvalidModel, ErrInvalidOptions,
// ErrProviderUnavailable, ErrClosed, models.ErrUnsupportedDataType, and
// ErrInvalidInput for everything a client got wrong in a Run (a server
// answers 400 to those).
//
// Every input is checked against the signature before ONNX Runtime sees
// it, then handed over without copying. Outputs whose shape is known
// before the run (fixed, or FP16/BF16 dimensions named like an input's)
// are preallocated and written in place; the others are allocated by ONNX
// Runtime and copied once. README.md explains why, and what onnxruntime_go
// cannot carry.
package ort
