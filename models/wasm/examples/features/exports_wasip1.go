//go:build wasip1

package main

import (
	"errors"

	"github.com/petrel-mesh/petrel/models/wasm/guest"
)

var (
	order = parseOrder(featureOrder)
	// sc and out are reused by every call: the host copies the output
	// before the next call, and a guest runs one call at a time.
	sc     scratch
	out    []byte
	frameT [1]guest.Tensor
)

//go:wasmexport petrel_abi_version
func abiVersion() uint32 { return guest.ABIVersion }

//go:wasmexport petrel_alloc
func alloc(n uint32) uint32 { return guest.Alloc(n) }

//go:wasmexport petrel_pre
func pre(ctPtr, ctLen, bodyPtr, bodyLen uint32) uint64 {
	defer guest.EndCall()
	t, err := sc.transform(order, guest.String(ctPtr, ctLen), guest.Bytes(bodyPtr, bodyLen))
	if errors.Is(err, errClient) {
		return guest.ClientError(err.Error())
	}
	if err != nil {
		return guest.Failure(err.Error())
	}
	frameT[0] = t
	out, err = guest.AppendFrame(out[:0], frameT[:])
	if err != nil {
		return guest.Failure(err.Error())
	}
	return guest.Ok(out)
}
