//go:build wasip1

package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"time"

	"github.com/petrel-mesh/petrel/models/wasm/guest"
)

//go:wasmexport petrel_abi_version
func abiVersion() uint32 { return guest.ABIVersion }

//go:wasmexport petrel_alloc
func alloc(n uint32) uint32 { return guest.Alloc(n) }

//go:wasmexport petrel_pre
func pre(ctPtr, ctLen, bodyPtr, bodyLen uint32) uint64 {
	defer guest.EndCall()
	report := map[string]any{}
	if _, err := os.ReadFile("/etc/passwd"); err != nil {
		report["file_error"] = err.Error()
	}
	if entries, err := os.ReadDir("."); err == nil {
		report["dir_entries"] = len(entries)
	}
	report["unix_nano"] = time.Now().UnixNano()
	r := make([]byte, 8)
	_, _ = rand.Read(r)
	report["random"] = hex.EncodeToString(r)
	js, _ := json.Marshal(report)
	n := len(js)
	data := append([]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}, js...)
	frame, err := guest.EncodeFrame([]guest.Tensor{{Name: "report", DataType: "BYTES", Shape: []int64{1}, Data: data}})
	if err != nil {
		return guest.Failure(err.Error())
	}
	return guest.Ok(frame)
}
