// Command trap is a transform whose petrel_pre panics (body "panic") or dereferences nil (any other body).
//
// It is a hostile guest for the runtime's tests; never deploy it.
package main

func main() {}
