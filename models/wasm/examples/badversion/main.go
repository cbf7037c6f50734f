// Command badversion is a transform that claims ABI version 2.
//
// It is a hostile guest for the runtime's tests; never deploy it.
package main

func main() {}
