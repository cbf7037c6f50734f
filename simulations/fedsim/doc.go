// Package fedsim simulates federated learning across many stores by
// driving the real learning code of package federated (local SGD,
// partitioners, aggregators, clipping, noise and the RDP accountant) and
// of federated/secagg, in one process, without sockets. It is the engine
// behind `petrel fl bench`, whose outputs live in docs/fl.
//
// # A simulated round
//
// [Run] splits the training set among Config.Clients clients with the
// chosen partitioner (IID, Dirichlet label skew, quantity skew or k
// classes per client), then for every round:
//
//  1. samples max(1, round(Fraction·Clients)) clients without replacement
//     and sorts them by id;
//     with Churn, each sampled client is then offline (probability
//     Unavailable) or drops out mid-round (probability Dropout) and sends
//     nothing, from a PCG stream of its own per round;
//  2. trains each sampled client from the global parameters on its own
//     shard — Config.Workers goroutines, each with its own model copy and
//     a fresh federated.Trainer whose shuffling seed is derived from
//     (Seed, round, client), so the momentum starts at zero every round;
//  3. turns each result into an update (local − global); a malicious
//     client (Attack) replaces it by −k·delta (sign-flip) or k·delta
//     (scale);
//  4. aggregates the updates in client-id order with the named
//     federated.Aggregator or, with Privacy on, with DP-FedAvg: clip each
//     update to C, sum, add N(0, (zC)²) noise, divide by the number
//     sampled, and charge one step to the accountant;
//  5. every EvalEvery rounds (and after the last) evaluates the global
//     model on the test set, split into a fixed number of chunks
//     evaluated in parallel.
//
// Every random choice draws from PCG streams derived from Config.Seed and
// every reduction runs in a fixed order, so a Config always gives the
// same Result, whatever the number of workers or the scheduling. A client
// whose training diverges or whose update is not finite is dropped from
// its round, as a coordinator would reject it; a round whose aggregation
// fails (for example Krum with too few updates, or a sum beyond float32)
// keeps the global model. Result counts both.
//
// [Centralized] trains the same model with the same SGD settings on all
// the training data, evaluating after every epoch: the baseline that
// federated accuracy is compared with.
//
// # Cost benchmarks
//
// [SecAggCost] runs one secure aggregation through its binary messages,
// with a share of the clients dropping out after sharing their keys, and
// reports per-client and coordinator compute time and bytes.
// [AggregateThroughput] times an aggregator on large random updates; it
// uses the process's GOMAXPROCS, which the caller sets to 1 to time one
// core.
//
// # Reports
//
// [WriteCSV], [PlotAccuracy] and [PlotAggregate] write results as CSV and
// as PNG plots (gonum.org/v1/plot) to any io.Writer.
package fedsim
