// Package routing will hold pure decision code: network coordinates, node
// scoring, rendezvous hashing with bounded load, retry and hedging
// policies. No sockets. It is empty until the mesh issue lands.
package routing
