// Package netem emulates a slow, optionally lossy network link in user
// space, for tests that need wide-area latency between processes on one
// machine whose kernel has no netem queueing discipline.
//
// A relay listens on one address and forwards to a target address, holding
// every datagram ([UDPRelay]) or every chunk of a byte stream ([TCPRelay])
// for a one-way delay in each direction. Clients dial the relay instead of
// the target; a request and its answer therefore see a round-trip time of
// about 2×Delay on top of loopback's microseconds. The delay can be
// changed at run time with SetConfig, to emulate a route change.
//
// # Delay lines
//
// Each direction of each flow owns a delay line: a FIFO of packets
// stamped with the time they are due, and one goroutine that sleeps until
// the head is due, then sends every packet that is due in one batch. The
// cost is one goroutine per delay line (two per flow) plus one reader per
// socket, independent of the packet rate, instead of a timer or goroutine
// per packet; the FIFO also keeps packets of a flow in order, as a real
// link does. With jitter the due times are made monotonic (a packet is
// never due before the one queued ahead of it), so jitter shows up as
// bunching rather than reordering — the behaviour of netem with a rate
// limit, and what a point-to-point link does. Loopback sockets and the Go
// timer resolution add tens of microseconds, so a measured RTT is a little
// above 2×Delay, never below.
//
// # UDP
//
// [UDPRelay] works like a NAT: the first datagram from a client address
// opens a flow with its own upstream socket connected to the target, so
// the target sees one source port per client and its replies are routed
// back to the right client. A flow idle for [DefaultFlowIdleTimeout] is
// closed, as conntrack expires UDP mappings. Loss drops datagrams at
// random with the configured probability, independently in each direction,
// using a PCG generator seeded from LinkConfig.Seed, so a test with a fixed
// seed and a fixed packet sequence sees the same drops every run. A delay
// line holds at most udpQueuePackets (8192) datagrams and udpQueueBytes (16 MiB)
// bytes; beyond that datagrams are dropped and counted as overflow, like a
// router's tail drop.
//
// # TCP
//
// [TCPRelay] accepts a connection, dials the target and pipes bytes in both
// directions through delay lines of 64 KiB chunks. Nothing is dropped: a
// direction holds at most tcpQueueBytes (16 MiB) and then stops reading, so TCP
// flow control pushes back on the sender. Throughput is therefore bounded
// by tcpQueueBytes/Delay (16 MiB / 10 ms = 1.6 GB/s), far above what the
// emulated links need; on loopback the relay moves hundreds of MB/s (see
// BenchmarkTCPRelayThroughput). A half-close (FIN) travels through the
// delay line like data, so it arrives after the bytes before it, and the
// relay closes both sockets when both directions have finished or either
// fails. Connection setup is not delayed: the relay accepts at once and
// dials the target immediately; only data and the closing FIN are.
//
// # Lifecycle
//
// Close stops the listener, closes every flow and connection, drops what
// is still queued and waits for all goroutines of the relay to return, so
// a test that closes its relays leaks nothing. It is idempotent.
package netem
