//go:build wasip1

package main

import "github.com/petrel-mesh/petrel/models/wasm/guest"

//go:wasmexport petrel_abi_version
func abiVersion() uint32 { return guest.ABIVersion }

//go:wasmexport petrel_alloc
func alloc(n uint32) uint32 { return guest.Alloc(n) }

var hoard [][]byte

//go:wasmexport petrel_pre
func pre(ctPtr, ctLen, bodyPtr, bodyLen uint32) uint64 {
	for {
		hoard = append(hoard, make([]byte, 1<<20))
	}
}
