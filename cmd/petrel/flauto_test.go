package main

import (
	"testing"
	"time"
)

func TestParseFLAuto(t *testing.T) {
	a, err := parseFLAuto("fashion:every=1h,drift=0.25,cooldown=10m,fraction=0.2,min-clients=3,strategy=median,rollout=10/50/100")
	if err != nil {
		t.Fatal(err)
	}
	if a.Model != "fashion" || a.Every != time.Hour || a.DriftPSI != 0.25 || a.Cooldown != 10*time.Minute ||
		a.Round.Fraction != 0.2 || a.Round.MinClients != 3 || a.Round.Strategy != "median" || a.Round.RolloutSteps != "10,50,100" {
		t.Fatalf("%+v", a)
	}
	for _, bad := range []string{"fashion", "fashion:", "fashion:every=soon", "fashion:color=red", "fashion:fraction=0.1", "../x:every=1h", "m:drift=-1,every=1h"} {
		if _, err := parseFLAuto(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
