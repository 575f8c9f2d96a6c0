package a2ahttp

import (
	"context"
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
		Scheme: "Bearer", Description: "a per-identity Tollgate token: tollgate agent token <id>"}}
	card.SecurityRequirements = a2a.SecurityRequirementsOptions{{SecuritySchemeName: a2a.SecuritySchemeScopes{}}}
	card.Capabilities.Streaming = true
	card.Capabilities.PushNotifications = false
	card.Capabilities.ExtendedAgentCard = false
	card.Capabilities.Extensions = append(card.Capabilities.Extensions, a2a.AgentExtension{URI: ExtensionURI,
		Description: "name the task you are working on as metadata " + ParentTaskKey + " when you delegate; usage in metadata " + UsageMetadataKey})
	return &card
}

// serveCard serves an agent's card, readable by v1.0 and v0.3 clients.
func (s *Server) serveCard(w http.ResponseWriter, r *http.Request, agent string) {
	producer := a2av0.NewAgentCardProducer(a2asrv.AgentCardProducerFn(func(context.Context) (*a2a.AgentCard, error) {
		return s.Card(agent), nil
	}))
	a2asrv.NewAgentCardHandler(producer).ServeHTTP(w, r)
}
