// Command badimport is a transform that imports a host function outside WASI (env.petrel_evil).
//
// It is a hostile guest for the runtime's tests; never deploy it.
package main

func main() {}
