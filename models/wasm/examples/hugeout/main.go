// Command hugeout is a transform whose petrel_pre returns a huge output: body "lie" claims 1 GiB it does not have; a decimal body returns a BYTES frame of about that many bytes.
//
// It is a hostile guest for the runtime's tests; never deploy it.
package main

func main() {}
