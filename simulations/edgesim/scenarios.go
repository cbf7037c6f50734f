package edgesim

import (
	"context"
	"fmt"
	"strings"
)

// Scenario is a named configuration of the simulator.
type Scenario struct {
	// Name is how `petrel sim edge --scenario` calls it.
	Name string
	// Description says what it exercises, in a sentence.
	Description string
	apply       func(*Config)
}

// Config returns the scenario's configuration for sites edge sites,
// requests requests and seed, with the default policy and the scenario's
// client entry (zero sites or requests take the defaults).
func (s Scenario) Config(sites, requests int, seed uint64) Config {
	cfg := Config{Scenario: s.Name, Sites: sites, Requests: requests, Seed: seed}
	if s.apply != nil {
		s.apply(&cfg)
	}
	return cfg
}

// Names of the scenarios.
const (
	ScenarioSteady    = "steady"
	ScenarioFlash     = "flash"
	ScenarioSlow      = "slow"
	ScenarioCrash     = "crash"
	ScenarioPartition = "partition"
	ScenarioCache     = "cache"
)

// Scenarios returns the named scenarios. In steady, flash and cache the
// clients use the coordinator's route API (EntryRouted), chosen by
// measurement (docs/sim/README.md): it brings the steady-state p99 to
// within 2% of the oracle's. The others keep the metro entry: with slow
// nodes routed entry is worse (the coordinator's loads are up to
// RouteReportInterval old and answers are cached for RouteTTL, so the
// slow nodes keep their share), and crash and partition exercise the
// node's own request path under faults.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: ScenarioSteady, Description: "steady state: diurnal traffic by population, Zipf popularity over 300 models, 10% caches, routed entry",
			apply: func(c *Config) { c.Entry = EntryRouted }},
		{Name: ScenarioFlash, Description: "load skew: London's request rate ×20 for 30% of the run (a flash crowd), routed entry",
			apply: func(c *Config) {
				c.Entry = EntryRouted
				c.Flash = &FlashCrowd{Metro: "London", Factor: 20, Start: 0.3, Length: 0.3}
			}},
		{Name: ScenarioSlow, Description: "slow nodes: 5% of the edge nodes serve 10× slower for the whole run",
			apply: func(c *Config) { c.Slow = &SlowNodes{Fraction: 0.05, Factor: 10} }},
		{Name: ScenarioCrash, Description: "crashes: 5% of the edge nodes crash between 20% and 60% of the run and recover after 20%",
			apply: func(c *Config) { c.Crashes = &Crashes{Fraction: 0.05, Start: 0.2, Spread: 0.4, Downtime: 0.2} }},
		{Name: ScenarioPartition, Description: "partition: the eu-west region's sites cannot reach any central cluster for 40% of the run",
			apply: func(c *Config) { c.Partition = &Partition{Region: "eu-west", Start: 0.3, Length: 0.4} }},
		{Name: ScenarioCache, Description: "cache: 500 models, each node's memory 10% of the catalogue's bytes, routed entry",
			apply: func(c *Config) { c.Entry = EntryRouted; c.Models = 500; c.CacheFraction = 0.10 }},
	}
}

// ScenarioByName returns the scenario called name.
func ScenarioByName(name string) (Scenario, error) {
	var names []string
	for _, s := range Scenarios() {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Scenario{}, fmt.Errorf("%w: unknown scenario %q (valid: %s)", ErrInvalidConfig, name, strings.Join(names, ", "))
}

// RunPolicies runs cfg once per policy (all of Policies() when policies
// is empty), naming each result Scenario-policy.
func RunPolicies(ctx context.Context, cfg Config, policies []string) ([]*Result, error) {
	if len(policies) == 0 {
		policies = Policies()
	}
	out := make([]*Result, 0, len(policies))
	for _, p := range policies {
		c := cfg
		c.Policy = p
		c.Name = ""
		r, err := Run(ctx, c)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
