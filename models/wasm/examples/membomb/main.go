// Command membomb is a transform whose petrel_pre allocates until the memory limit stops it.
//
// It is a hostile guest for the runtime's tests; never deploy it.
package main

func main() {}
