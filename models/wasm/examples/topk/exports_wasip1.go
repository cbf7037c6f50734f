//go:build wasip1

package main

import (
	"errors"

	"github.com/petrel-mesh/petrel/models/wasm/guest"
)

var (
	names = parseLabels(labels)
	k     = parseK(topK)
	// body, out and idx are reused by every call: the host copies the
	// output before the next call, and a guest runs one call at a time.
	body, out []byte
	idx       = make([]int, 0, k)
)

//go:wasmexport petrel_abi_version
func abiVersion() uint32 { return guest.ABIVersion }

//go:wasmexport petrel_alloc
func alloc(n uint32) uint32 { return guest.Alloc(n) }

//go:wasmexport petrel_post
func post(framePtr, frameLen, acceptPtr, acceptLen uint32) uint64 {
	defer guest.EndCall()
	ts, err := guest.DecodeFrame(guest.Bytes(framePtr, frameLen))
	if err != nil {
		return guest.Failure(err.Error())
	}
	ct, b, err := appendTransform(body[:0], idx[:0], names, k, ts, string(guest.Bytes(acceptPtr, acceptLen)))
	if errors.Is(err, errClient) {
		return guest.ClientError(err.Error())
	}
	if err != nil {
		return guest.Failure(err.Error())
	}
	body = b
	out = guest.AppendBody(out[:0], ct, b)
	return guest.Ok(out)
}
