package gossipsim

import (
	"slices"
	"time"
)

// The oracles are the physical lower bounds of the two convergences on the
// simulated network: what an ideal protocol with perfect knowledge could
// achieve given only the propagation delays (no jitter, no loss, no
// protocol timers, no processing). They depend on the placement alone, so
// they are exact for the run they are reported with.

// joinOracle is the join's lower bound: the joiner announces itself
// directly to every observer, so observer o learns of it after the
// one-way delay joiner → o.
func (nw *network) joinOracle(joiner int, observers []int) Convergence {
	c := Convergence{Observers: len(observers)}
	j := nw.members[joiner]
	for _, o := range observers {
		c.Times = append(c.Times, nw.propagation(j, nw.members[o]))
	}
	slices.Sort(c.Times)
	return c
}

// failureOracle is the failure's lower bound: silence cannot be told from
// a late answer before a round trip, so the earliest anyone can know is a
// member p that probed the victim at the instant of the crash and missed
// the answer one round trip later; it then tells observer o directly.
// Observer o learns after min over p of 2·d(p, victim) + d(p, o), where p
// ranges over the live members (p = o included: o probed itself).
func (nw *network) failureOracle(victim int, observers []int) Convergence {
	c := Convergence{Observers: len(observers)}
	v := nw.members[victim]
	rtt := make([]time.Duration, len(observers))
	for k, p := range observers {
		rtt[k] = 2 * nw.propagation(nw.members[p], v)
	}
	for _, o := range observers {
		to := nw.members[o]
		best := time.Duration(1<<63 - 1)
		for k, p := range observers {
			if rtt[k] >= best {
				continue
			}
			d := rtt[k]
			if p != o {
				d += nw.propagation(nw.members[p], to)
			}
			best = min(best, d)
		}
		c.Times = append(c.Times, best)
	}
	slices.Sort(c.Times)
	return c
}
