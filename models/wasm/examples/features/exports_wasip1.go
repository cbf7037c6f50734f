//go:build wasip1

package main

import (
	"errors"

	"github.com/petrel-mesh/petrel/models/wasm/guest"
)

var order = parseOrder(featureOrder)

//go:wasmexport petrel_abi_version
func abiVersion() uint32 { return guest.ABIVersion }

//go:wasmexport petrel_alloc
func alloc(n uint32) uint32 { return guest.Alloc(n) }

//go:wasmexport petrel_pre
func pre(ctPtr, ctLen, bodyPtr, bodyLen uint32) uint64 {
	defer guest.EndCall()
	t, err := transform(order, string(guest.Bytes(ctPtr, ctLen)), guest.Bytes(bodyPtr, bodyLen))
	if errors.Is(err, errClient) {
		return guest.ClientError(err.Error())
	}
	if err != nil {
		return guest.Failure(err.Error())
	}
	frame, err := guest.EncodeFrame([]guest.Tensor{t})
	if err != nil {
		return guest.Failure(err.Error())
	}
	return guest.Ok(frame)
}
