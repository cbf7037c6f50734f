// Command sandbox is a transform whose petrel_pre reports what the sandbox lets it see: a file read, the clock and random bytes, as one BYTES element of JSON in tensor "report".
//
// It is a hostile guest for the runtime's tests; never deploy it.
package main

func main() {}
