package main

import (
	"errors"
	"testing"
)

func TestTransform(t *testing.T) {
	order := parseOrder("a, b")
	tests := []struct {
		name, ct, body string
		rows           int64
		client         bool
	}{
		{"features", "application/json", `{"features":{"b":2,"a":1}}`, 1, false},
		{"instances", "application/vnd.x+json", ` {"instances":[[1,2],{"a":3,"b":-4e2}]} `, 2, false},
		{"escaped key", "", `{"features":{"\u0061":1,"b":2}}`, 1, false},
		{"leading zero", "", `{"instances":[[01,2]]}`, 0, true},
		{"trailing", "", `{"instances":[[1,2]]} x`, 0, true},
		{"missing", "", `{"features":{"a":1}}`, 0, true},
		{"unknown field", "", `{"feature":{}}`, 0, true},
		{"both", "", `{"features":{"a":1,"b":2},"instances":[[1,2]]}`, 0, true},
		{"not json", "text/csv", `1,2`, 0, true},
		{"unterminated", "", `{"features":{"a`, 0, true},
		{"nan word", "", `{"instances":[[NaN,1]]}`, 0, true},
		{"empty instances", "", `{"instances":[]}`, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := transform(order, tc.ct, []byte(tc.body))
			if tc.client {
				if !errors.Is(err, errClient) {
					t.Fatalf("err = %v, want a client error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Shape[0] != tc.rows || got.Shape[1] != 2 || len(got.Data) != int(8*tc.rows) {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

// TestDefaultOrder: the link-time default is the Iris feature order.
func TestDefaultOrder(t *testing.T) {
	if got := parseOrder(featureOrder); len(got) != 4 || got[0] != "sepal_length" || got[3] != "petal_width" {
		t.Fatalf("default order %v", got)
	}
}
