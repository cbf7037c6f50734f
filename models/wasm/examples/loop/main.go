// Command loop is a transform whose petrel_pre never returns.
//
// It is a hostile guest for the runtime's tests; never deploy it.
package main

func main() {}
