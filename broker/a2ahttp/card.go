package a2ahttp

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2acompat/a2av0"
	"github.com/a2aproject/a2a-go/v2/a2asrv"
)

// SecuritySchemeName is the name of the gateway's bearer-token scheme in
// the cards it serves.
const SecuritySchemeName = "tollgate"

// Card returns the card the ingress serves for agent: its own card (or
// one made from its id), with the interfaces pointing at the gateway (v1.0
// JSON-RPC and HTTP+JSON, v0.3 JSON-RPC, and the NATS binding when
// configured), the gateway's bearer scheme as the only security, and the
// Tollgate extension declared.
func (s *Server) Card(agent string) *a2a.AgentCard {
	var card a2a.AgentCard
	if s.cfg.Cards != nil {
		if own := s.cfg.Cards(agent); own != nil {
			card = *own
		}
	}
	if card.Name == "" {
		card.Name = agent
	}
	if card.Description == "" {
		card.Description = agent + ", behind the Tollgate gateway"
	}
	if card.Version == "" {
		card.Version = "1.0.0"
	}
	if card.DefaultInputModes == nil {
		card.DefaultInputModes = []string{"text/plain"}
	}
	if card.DefaultOutputModes == nil {
		card.DefaultOutputModes = []string{"text/plain"}
	}
	if card.Skills == nil {
		card.Skills = []a2a.AgentSkill{}
	}
	base := s.cfg.PublicURL + "/" + agent
	card.SupportedInterfaces = []*a2a.AgentInterface{
		{URL: base + "/", ProtocolBinding: a2a.TransportProtocolJSONRPC, ProtocolVersion: a2a.Version},
		{URL: base + "/rest", ProtocolBinding: a2a.TransportProtocolHTTPJSON, ProtocolVersion: a2a.Version},
		{URL: base + "/", ProtocolBinding: a2a.TransportProtocolJSONRPC, ProtocolVersion: a2av0.Version},
	}
	if s.cfg.NATSURL != "" {
		card.SupportedInterfaces = append(card.SupportedInterfaces,
			&a2a.AgentInterface{URL: s.cfg.NATSURL, ProtocolBinding: a2a.TransportProtocol(NATSBindingURI), ProtocolVersion: a2a.Version})
	}
	card.SecuritySchemes = a2a.NamedSecuritySchemes{SecuritySchemeName: a2a.HTTPAuthSecurityScheme{
		Scheme: "Bearer", Description: bearerDescription}}
	card.SecurityRequirements = a2a.SecurityRequirementsOptions{{SecuritySchemeName: a2a.SecuritySchemeScopes{}}}
	card.Capabilities.Streaming = true
	card.Capabilities.PushNotifications = false
	card.Capabilities.ExtendedAgentCard = false
	card.Capabilities.Extensions = append(card.Capabilities.Extensions, a2a.AgentExtension{URI: ExtensionURI,
		Description: "name the task you are working on as metadata " + ParentTaskKey + " when you delegate; usage in metadata " + UsageMetadataKey})
	return &card
}

// serveCard serves an agent's card, readable by v1.0 and v0.3 clients:
// a2av0's union of the two formats, with each security scheme written in
// both shapes in one object (v0.3's "type" members beside v1.0's
// "httpAuthSecurityScheme"), which each version's parser reads as its own.
func (s *Server) serveCard(w http.ResponseWriter, r *http.Request, agent string) {
	a2asrv.NewAgentCardHandler(unionCard{s: s, agent: agent}).ServeHTTP(w, r)
}

type unionCard struct {
	s     *Server
	agent string
}

func (u unionCard) Card(context.Context) (*a2a.AgentCard, error) { return u.s.Card(u.agent), nil }

func (u unionCard) CardJSON(ctx context.Context) ([]byte, error) {
	compat := a2av0.NewAgentCardProducer(u).(a2asrv.AgentCardJSONProducer)
	b, err := compat.CardJSON(ctx)
	if err != nil {
		return nil, err
	}
	var card map[string]json.RawMessage
	if err := json.Unmarshal(b, &card); err != nil {
		return nil, err
	}
	scheme := map[string]any{
		"type": "http", "scheme": "Bearer", "description": bearerDescription,
		"httpAuthSecurityScheme": map[string]any{"scheme": "Bearer", "description": bearerDescription},
	}
	if card["securitySchemes"], err = json.Marshal(map[string]any{SecuritySchemeName: scheme}); err != nil {
		return nil, err
	}
	return json.MarshalIndent(card, "", "  ")
}

const bearerDescription = "a per-identity Tollgate token: tollgate agent token <id>"
