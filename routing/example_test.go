package routing_test

import (
	"context"
	"fmt"
	"time"

	"github.com/petrel-mesh/petrel/routing"
)

func ExampleEstimateRTT() {
	berlin := routing.Location{Lat: 52.52, Lon: 13.405}
	paris := routing.Location{Lat: 48.8566, Lon: 2.3522}

	// Fresh coordinates have not converged, so geography decides.
	self := routing.NewCoordinate(nil)
	peer := routing.NewCoordinate(nil)
	rtt, src := routing.EstimateRTT(self, peer, berlin, paris)
	fmt.Println(rtt.Round(time.Millisecond), src)

	// Nothing known at all.
	rtt, src = routing.EstimateRTT(nil, nil, berlin, routing.Location{})
	fmt.Println(rtt, src)
	// Output:
	// 15ms geo
	// 250ms unknown
}

func ExampleNewPolicy() {
	p, err := routing.NewPolicy("nearest", routing.PolicyOptions{ServiceTime: 5 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	cands := []routing.Candidate{
		{ID: "near-busy", RTT: 2 * time.Millisecond, RTTSource: routing.RTTFromCoordinates, QueueDepth: 10, Ready: true, Healthy: true},
		{ID: "far-idle", RTT: 30 * time.Millisecond, RTTSource: routing.RTTFromGeo, Ready: true, Healthy: true},
		{ID: "nearest-cold", RTT: time.Millisecond, RTTSource: routing.RTTFromCoordinates, Ready: false, Healthy: true},
	}
	for _, i := range p.Order("resnet50/3", cands) {
		fmt.Printf("%s %.0fms\n", cands[i].ID, routing.Score(cands[i], 5*time.Millisecond))
	}
	// Output:
	// far-idle 30ms
	// near-busy 52ms
}

func ExamplePlace() {
	nodes := []routing.Candidate{
		{ID: "edge-1", Healthy: true},
		{ID: "edge-2", Healthy: true},
		{ID: "edge-3", Healthy: false},
		{ID: "edge-4", Healthy: true},
	}
	fmt.Println(len(routing.Place("resnet50/3", nodes, 2, 0)))
	fmt.Println(len(routing.Place("resnet50/3", nodes, 5, 0)))
	// Output:
	// 2
	// 3
}

func ExampleHedge() {
	budget := routing.NewRetryBudget(routing.DefaultRetryRatio, routing.DefaultRetryMinPerSecond, routing.DefaultRetryBudgetTTL, nil)
	budget.Deposit() // one original request

	slow := func(ctx context.Context) (string, error) {
		select {
		case <-time.After(time.Minute):
			return "slow peer", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	fast := func(context.Context) (string, error) { return "fast peer", nil }

	v, idx, err := routing.Hedge(context.Background(), 10*time.Millisecond, budget, slow, fast)
	fmt.Println(v, idx, err)
	// Output:
	// fast peer 1 <nil>
}
