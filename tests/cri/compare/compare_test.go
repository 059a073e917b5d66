package main

import (
	"reflect"
	"testing"
)

func TestCompare(t *testing.T) {
	ref := result{states: map[string]string{
		"a": "passed", "b": "passed", "c": "passed", "d": "passed", "e": "skipped", "f": "failed",
	}, failure: map[string]string{}}
	r := result{states: map[string]string{
		"a": "passed",  // same
		"b": "failed",  // regression
		"c": "skipped", // skipped for a reason of its own: regression
		"d": "skipped", // critest's containerd discrepancy: noted
		"e": "failed",  // not passing on ref: not judged
		"f": "passed",
	}, failure: map[string]string{
		"b": "boom",
		"c": "no AppArmor",
		"d": "spec discrepancy: containerd lost 5 container(s) created concurrently",
	}}
	reg, disc := compare(ref, r)
	if want := []string{"b", "c"}; !reflect.DeepEqual(reg, want) {
		t.Errorf("regressions %v, want %v", reg, want)
	}
	if want := []string{"d"}; !reflect.DeepEqual(disc, want) {
		t.Errorf("discrepancies %v, want %v", disc, want)
	}
	// a spec missing from r (not run) is a regression
	delete(r.states, "a")
	if reg, _ := compare(ref, r); !reflect.DeepEqual(reg, []string{"a", "b", "c"}) {
		t.Errorf("regressions %v, want a missing spec among them", reg)
	}
}
