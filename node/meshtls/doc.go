// Package meshtls issues and loads the certificates Petrel nodes use for
// mutual TLS between each other, and builds the matching tls.Config values
// for the node's listeners and for dialing peers.
//
// # Trust model
//
// A mesh has one certificate authority (CA). Every node holds a leaf
// certificate signed by it whose URI SAN petrel://node/<nodeID> names the
// node. A peer is a mesh member exactly when it presents a certificate that
// chains to the mesh CA; [PeerID] reads the node ID from such a verified
// certificate. The identity lives in a URI SAN rather than in the subject
// common name because common names are deprecated for identity (RFC 6125,
// and Go ignores them for host name checks) and because a URI is the
// established place for a workload identity (SPIFFE uses the same shape).
// The host names and IP addresses the node is reached at are ordinary DNS
// and IP SANs, so a peer dialing https://10.0.0.7:8443 verifies the server
// the usual way and then learns which node answered.
//
// # Listener policy
//
// A node's listener serves two audiences on the same port: public inference
// clients, which have no certificate, and mesh peers, which forward
// requests carrying mesh headers (hop count, deadline). [ServerConfig]
// therefore uses tls.VerifyClientCertIfGiven: a client without a
// certificate completes the handshake and reaches the public API, while a
// client that does present a certificate must chain to the mesh CA or the
// handshake fails. The application then trusts mesh headers only when
// [PeerID] reports a verified peer; an unauthenticated request with a hop
// count header is treated as a public request.
//
// # Choices and constants
//
//   - Keys are ECDSA P-256: fast to generate and to verify, small
//     certificates (which matters for QUIC, whose server amplification
//     limit makes large certificate chains cost a round trip), and
//     supported by every TLS stack the mesh talks to.
//   - Only TLS 1.3 is offered. Every peer is Petrel itself (Go's crypto/tls
//     or quic-go, which requires 1.3 anyway), and 1.3 gives one round trip
//     handshakes, encrypted certificates and no legacy cipher suites.
//   - NotBefore is backdated by clockSkew (five minutes) so that a node
//     whose clock runs slightly behind the issuer still accepts a fresh
//     certificate. A leaf never outlives its CA: the requested lifetime is
//     cut at the CA's NotAfter.
//   - Serial numbers are 128 random bits, as the CA/Browser Forum requires
//     for public CAs; it makes serials unique without issuer state.
//   - The CA may sign leaves only (MaxPathLen 0), and leaves carry both
//     ServerAuth and ClientAuth so one certificate serves a node's listener
//     and its outgoing peer connections.
//   - There is no revocation. Dev CAs and node certificates are meant to be
//     short lived and re-issued; to revoke a node, rotate the CA.
//
// # Files
//
// A CA directory holds ca.pem (certificate, mode 0644) and ca-key.pem
// (PKCS #8 private key, mode 0600). [NewDevCA] creates the pair with
// no-clobber semantics (it never overwrites an existing file) and loads it
// when it already exists, so every process of a development mesh may call
// it with the same directory. [LoadCA] refuses a key file readable by group
// or others, like ssh does. Node files <nodeID>.pem and <nodeID>-key.pem
// are replaced atomically (write to a temporary file, fsync, rename), so a
// reader sees either the old or the new file, never a torn one; the two
// files are replaced one after the other, so a reader racing a re-issue may
// briefly see a new key with the old certificate and get a clear "private
// key does not match public key" error, which a retry resolves.
//
// Every file read by this package is capped at maxPEMFileSize (1 MiB) and
// validated (PEM block types, CA constraints, key/certificate match,
// validity period) before use, so a wrong or damaged file gives an error
// that names the file and the problem instead of a failed handshake later.
package meshtls
