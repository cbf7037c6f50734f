// Package secagg implements secure aggregation of model updates after
// Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
// Machine Learning" (CCS 2017), in its semi-honest form with dropout
// recovery, plus the sparse neighbour graph of SecAgg+ (Bell et al., CCS
// 2020) as an option. It is pure decision code: no sockets, no goroutines,
// no clocks. The caller moves the messages (NATS, in-memory, anything) and
// decides when a round's collection window closes.
//
// # What the server learns
//
// Each client i holds a float32 vector x_i. It quantises x_i to fixed point
// in Z_{2^32} (see [Config] for the scale and clipping range) and sends
//
//	y_i = x_i + PRG(b_i) + Σ_{j ∈ N(i) ∩ U2} Δ_ij · PRG(s_ij)   (mod 2^32)
//
// where b_i is a fresh self-mask seed, s_ij is a seed agreed by X25519
// between i and its neighbour j, and Δ_ij is +1 when i > j and −1 when
// i < j, so pairwise masks cancel in the sum. Both b_i and i's mask secret
// key are Shamir-shared (threshold t) among i's neighbours, with shares
// sent through the server under AES-GCM keys agreed pairwise. When the
// masked inputs are in, each surviving client reveals, for every
// neighbour, either its share of b_j (j sent a masked input) or its share
// of j's mask secret key (j dropped after sharing keys), never both. The
// server rebuilds the secrets it is owed, removes the self masks of the
// survivors and the pairwise masks of the dropped clients, and obtains
// Σ_{i ∈ U3} x_i and |U3|, nothing more.
//
// # Threat model
//
// Protected: against an honest-but-curious server (one that follows the
// protocol but records everything it sees), together with fewer than t
// colluding clients, the inputs of honest clients stay hidden except for
// their sum over the set U3 of clients whose masked inputs were included,
// and |U3| ≥ t always. A single masked vector is indistinguishable from
// uniform in Z_{2^32}^L (the self mask is a fresh AES-CTR stream).
//
// Too few survivors: every round needs at least t participants (for the
// sparse graph, at least t in each affected neighbourhood). When fewer
// remain, the server aborts ([ErrTooFewClients]) and nothing is revealed;
// a client also refuses ([ErrTooFewClients]) an unmasking request that
// lists fewer than t survivors, because answering it could let a server
// unmask a small set, down to a single client. The threshold must be a
// strict majority of a neighbourhood (2t > n, or 2t > k+1 with k
// neighbours) so that two disjoint survivor sets cannot both be unmasked.
//
// Not protected:
//
//   - A malicious server. This is the basic protocol without the
//     signatures of the PKI variant and without the consistency-check
//     round, so an active server can lie about who dropped out (telling
//     different clients different survivor sets) or substitute public
//     keys, and so learn individual inputs. Clients enforce what they can
//     locally (a survivor set of at least t, a response given once, never
//     both shares of one client), which is not a proof of security
//     against an active server.
//   - Malicious clients. A client can send any vector in range: secure
//     aggregation hides updates, it does not vet them. This is a real
//     tension with robust aggregation (median, trimmed mean, norm checks,
//     Krum): those need to see individual updates, and the server here
//     only sees masked ones. What remains possible is clipping before
//     masking (done here: every coordinate is clipped to [-Clip, Clip], so
//     one client moves any coordinate of the sum by at most Clip), bounds
//     on what the sum may look like, and differential-privacy noise added
//     by the clients. Robust aggregators must run on unmasked data or not
//     at all.
//   - Side channels: message sizes, timing and who drops out are visible.
//   - Transport: authenticity of the messages between client and server
//     is the transport's job (mutual TLS, NATS credentials).
//
// With the sparse graph (Config.Neighbours = k), each client only masks
// with and shares to its k neighbours on a ring laid out by a permutation
// derived from Config.GraphSeed. The guarantees then hold per
// neighbourhood and rest on the graph being random and unknown to the
// clients when they joined: choose a fresh GraphSeed for every
// aggregation after the participants are fixed.
//
// # Usage
//
// One aggregation is one [Server] and one [Client] per participant, all
// built from the same [Config]. Client ids run from 1 to Config.N.
//
//  1. Round 0, AdvertiseKeys: every client calls [Client.AdvertiseKeys] and
//     sends the message; the server feeds each to
//     [Server.HandleAdvertiseKeys], then calls [Server.EndAdvertiseKeys]
//     and sends each client its [PublicKeys].
//  2. Round 1, ShareKeys: each client calls [Client.ShareKeys] with its
//     PublicKeys; the server feeds the answers to [Server.HandleShareKeys],
//     calls [Server.EndShareKeys] and sends each client its [Ciphertexts].
//  3. Round 2, MaskedInputCollection: each client calls
//     [Client.MaskedInput] with its Ciphertexts and its update; the server
//     feeds the answers to [Server.HandleMaskedInput] (they are summed as
//     they arrive) and calls [Server.EndMaskedInput], which returns the
//     [UnmaskRequest]s.
//  4. Round 3, Unmasking: each client answers with [Client.Unmask]; the
//     server feeds the answers to [Server.HandleUnmask] and calls
//     [Server.Finish], which returns the [Result] once enough shares are
//     in (it can be called again after more answers arrive).
//
// A client that does not answer in a round has dropped out; the server
// decides when a round is over by calling the End method. Every message
// has a compact binary encoding (MarshalBinary, and Decode or the
// per-type Decode functions, which validate everything they read).
// Handle methods reject messages from unknown ids, duplicates, messages
// for another round and vectors or share lists of the wrong shape, and
// leave the server's state unchanged when they do.
package secagg
