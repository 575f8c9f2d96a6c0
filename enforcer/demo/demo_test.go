package demo_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tollgate/tollgate/enforcer/demo"
)

// TestScenarios: the loop scenario runs without the policy that denies
// re-invoking the orchestrator; an unknown scenario is refused before
// anything starts.
func TestScenarios(t *testing.T) {
	incident, err := demo.Policies(demo.Incident)
	if err != nil {
		t.Fatal(err)
	}
	loop, err := demo.Policies(demo.Loop)
	if err != nil {
		t.Fatal(err)
	}
	if len(incident) != 3 || len(loop) != 2 {
		t.Fatalf("policy files: incident %d, loop %d", len(incident), len(loop))
	}
	if _, err := demo.Run(context.Background(), demo.Options{Scenario: "flood"}); !errors.Is(err, demo.ErrScenario) {
		t.Fatalf("unknown scenario: %v", err)
	}
	cfg, keys, err := demo.Config(t.TempDir())
	if err != nil || len(cfg.Agents) != 4 || len(cfg.Users) != 1 || len(keys) != 5 {
		t.Fatalf("config: %d agents, %d users, %d keys, %v", len(cfg.Agents), len(cfg.Users), len(keys), err)
	}
}
