// Package federated will hold pure learning code: trainable families,
// local SGD, aggregation strategies, differential privacy and secure
// aggregation. No sockets. It is empty until the federated issue lands.
package federated
