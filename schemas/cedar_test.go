package schemas

import (
	"slices"
	"testing"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

func TestCedarSchema(t *testing.T) {
	var s schema.Schema
	if err := s.UnmarshalCedar(CedarSchema()); err != nil {
		t.Fatalf("parse: %v", err)
	}
	r, err := s.Resolve()
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	var entities []string
	for et := range r.Entities {
		entities = append(entities, string(et))
	}
	slices.Sort(entities)
	if want := []string{"Agent", "Model", "Tool", "User"}; !slices.Equal(entities, want) {
		t.Errorf("entity types %v, want %v", entities, want)
	}
	for _, a := range []Action{ActionInvoke, ActionCallTool, ActionCallModel} {
		if _, ok := r.Actions[types.NewEntityUID("Action", types.String(a))]; !ok {
			t.Errorf("action %s missing", a)
		}
	}
	// The Go principal types are the schema's entity type names.
	for _, pt := range []PrincipalType{TypeUser, TypeAgent, TypeTool, TypeModel} {
		if !slices.Contains(entities, string(pt)) {
			t.Errorf("principal type %s is not a Cedar entity type", pt)
		}
	}

	v := validate.New(r)
	good := types.Entity{UID: types.NewEntityUID("Agent", "a"), Attributes: types.NewRecord(types.RecordMap{
		"team": types.String("t"), "tags": types.NewSet(types.String("x")),
	})}
	if err := v.Entity(good); err != nil {
		t.Errorf("good entity rejected: %v", err)
	}
	bad := types.Entity{UID: types.NewEntityUID("Agent", "a"), Attributes: types.NewRecord(types.RecordMap{"team": types.Long(1)})}
	if err := v.Entity(bad); err == nil {
		t.Error("entity with a Long team and no tags accepted")
	}
	req := types.Request{
		Principal: types.NewEntityUID("Tool", "t"), Action: types.NewEntityUID("Action", "invoke"),
		Resource: types.NewEntityUID("Agent", "a"), Context: types.NewRecord(nil),
	}
	if err := v.Request(req); err == nil {
		t.Error("a Tool invoking an agent with an empty context was accepted")
	}
}
