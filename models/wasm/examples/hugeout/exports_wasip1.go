//go:build wasip1

package main

import (
	"strconv"

	"github.com/petrel-mesh/petrel/models/wasm/guest"
)

//go:wasmexport petrel_abi_version
func abiVersion() uint32 { return guest.ABIVersion }

//go:wasmexport petrel_alloc
func alloc(n uint32) uint32 { return guest.Alloc(n) }

//go:wasmexport petrel_pre
func pre(ctPtr, ctLen, bodyPtr, bodyLen uint32) uint64 {
	defer guest.EndCall()
	body := string(guest.Bytes(bodyPtr, bodyLen))
	if body == "lie" {
		return guest.Pack(guest.Alloc(16), guest.MaxLen, guest.StatusOK)
	}
	n, err := strconv.Atoi(body)
	if err != nil || n < 0 {
		return guest.ClientError("body must be \"lie\" or a byte count")
	}
	data := make([]byte, 4+n)
	data[0], data[1], data[2], data[3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	frame, err := guest.EncodeFrame([]guest.Tensor{{Name: "blob", DataType: "BYTES", Shape: []int64{1}, Data: data}})
	if err != nil {
		return guest.Failure(err.Error())
	}
	return guest.Ok(frame)
}
