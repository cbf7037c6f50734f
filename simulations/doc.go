// Package simulations will drive the real routing, cache and learning
// code at internet scale with a discrete-event simulator. It is empty
// until the simulations issue lands.
package simulations
