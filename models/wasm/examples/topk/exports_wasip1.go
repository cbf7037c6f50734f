//go:build wasip1

package main

import (
	"errors"

	"github.com/petrel-mesh/petrel/models/wasm/guest"
)

var (
	r = newRenderer(parseLabels(labels), parseK(topK))
	// dec and out are reused by every call: the host copies the output
	// before the next call, and a guest runs one call at a time.
	dec guest.FrameDecoder
	out []byte
)

//go:wasmexport petrel_abi_version
func abiVersion() uint32 { return guest.ABIVersion }

//go:wasmexport petrel_alloc
func alloc(n uint32) uint32 { return guest.Alloc(n) }

//go:wasmexport petrel_post
func post(framePtr, frameLen, acceptPtr, acceptLen uint32) uint64 {
	defer guest.EndCall()
	ts, err := dec.Decode(guest.Bytes(framePtr, frameLen))
	if err != nil {
		return guest.Failure(err.Error())
	}
	ct, b, err := r.render(ts, guest.String(acceptPtr, acceptLen))
	if errors.Is(err, errClient) {
		return guest.ClientError(err.Error())
	}
	if err != nil {
		return guest.Failure(err.Error())
	}
	out = guest.AppendBody(out[:0], ct, b)
	return guest.Ok(out)
}
