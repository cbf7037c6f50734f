// Package federated is Petrel's pure learning code: data sets, trainable
// model families, local SGD, client partitioners, aggregation strategies,
// differential privacy and the collection of a round's updates. It opens
// no sockets and reads no clocks; every random choice comes from a seeded
// math/rand/v2 generator, so the same inputs and seeds give the same
// results. The coordinator and the nodes own the I/O and call into it.
//
// # Models and parameters
//
// A model is an *onnx.Model (package models/onnx): a stack of dense
// layers whose weights are float32. NewModel builds one from a Spec
// ("softmax", "logistic" or "mlp" with ReLU hidden layers and a softmax
// output) with seeded random weights. Flatten and SetParams move the
// parameters to and from one vector, layer by layer, W (row-major
// [In][Out]) then B; updates, aggregation and gradients all use that
// layout, and NumParams is its length. A trained model is exported with
// its MarshalONNX method, and its Forward method computes the same
// function as the training code's forward pass.
//
// # Data
//
// A Dataset holds N samples of Dim float32 features and int32 class
// labels. LoadIDX reads the IDX files of MNIST-style data sets (gzip or
// not), LoadFashionMNIST the Fashion-MNIST files Debian's
// dataset-fashion-mnist package installs. Subset copies chosen rows.
//
// # Training
//
// Gradient computes the gradient of the mean cross-entropy (softmax
// cross-entropy for multi-class outputs, binary cross-entropy for a
// logistic output) by backpropagation. A Trainer runs minibatch SGD with
// heavy-ball momentum, L2 weight decay and the FedProx proximal term; it
// reuses its buffers, so steps do not allocate. Train makes epochs over a
// local data set, Step takes one step on a minibatch (online learning).
// Evaluate and Predict measure a model.
//
// A client's round, in the caller's hands:
//
//  1. SetParams(model, global) with the round's global parameters.
//  2. trainer.Train(local, global) (global as the FedProx anchor, or nil).
//  3. Send Update{Delta: Flatten(model) - global, Samples: local.N}.
//
// # Simulated populations
//
// PartitionIID, PartitionDirichlet (label skew), PartitionQuantitySkew
// (size skew) and PartitionKClasses (at most k labels per client) split a
// data set's indices among simulated clients.
//
// # Aggregation and privacy
//
// An Aggregator (chosen by name with NewAggregator: FedAvg, server-side
// optimisers, robust rules) turns a round's updates into the next global
// parameters; a Collector decides which updates count. ClipUpdate,
// AddNoise and the Accountant implement differentially private
// aggregation; package secagg masks updates for secure aggregation.
package federated
