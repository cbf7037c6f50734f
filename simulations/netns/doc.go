// Package netns builds small virtual networks out of Linux network
// namespaces for tests that run Petrel nodes as separate processes on
// separate "hosts": a [Lab] holds [Host]s (one network namespace each,
// loopback up) joined by veth pairs ([Lab.Link]) with 10.x addresses,
// and, for hosts that route between others, IP forwarding and static
// routes.
//
// # Processes, not goroutines
//
// A network namespace belongs to an OS thread, and the Go scheduler moves
// goroutines between threads and starts new threads in the process's
// original namespace, so Go code cannot run "inside" a host. Tests run
// programs there instead: [Host.Command] returns an exec.Cmd that runs a
// program under `ip netns exec`. Run the petrel binary, or re-execute the
// test binary itself with -test.run=TestHelperProcess and an environment
// variable selecting what the helper does (the pattern of Go's os/exec
// tests); see this package's tests for an example.
//
// # Names and cleanup
//
// New(prefix) gives the lab the unique prefix "<prefix>-<pid>-<n>", where
// pid is the process ID and n counts labs within the process, so parallel
// test binaries, and parallel tests within one, never collide; a host's
// namespace is "<lab prefix>-<name>". Close kills the processes still in
// the lab's namespaces and deletes the namespaces, which destroys their
// veth interfaces too. A test binary that crashes cannot run Close, so New
// also removes namespaces named "<prefix>-<pid>-<n>-…" whose pid no longer
// runs: the leftovers of earlier crashed runs with the same prefix. This
// assumes that every process using /run/netns shares one PID namespace,
// which holds for tests on one machine or in one container.
//
// # Safety
//
// Nothing is ever created or changed in the namespace the test runs in:
// veth pairs are created directly between two lab namespaces
// (`ip -n A link add … peer … netns B`), addresses must lie in 10.0.0.0/8,
// and [Host.SetSysctl] accepts only per-namespace net.* keys. Interfaces
// are named eth0, eth1, … on each host in the order of the Link calls.
//
// # Requirements
//
// Root (or CAP_SYS_ADMIN and CAP_NET_ADMIN), a kernel with network
// namespaces and veth, and the ip command from iproute2; [Host.SetSysctl]
// and [Host.EnableForwarding] also need sysctl (procps). [Available]
// checks all of this by creating and deleting a probe namespace, and
// returns an error that says what is missing. Tests that need a lab should
// fail, not skip, with that error: a skipped network test hides a broken
// environment.
package netns
