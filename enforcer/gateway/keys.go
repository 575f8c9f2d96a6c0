package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// keysDir is the key folder inside a data folder.
const keysDir = "keys"

// DataKeysDir returns the key folder of a data folder (the format of
// broker.ReadKeyDir): the demo leaves its cast's public keys there, so that
// a kept run's signatures can be checked.
func DataKeysDir(dataDir string) string { return filepath.Join(dataDir, keysDir) }

// SigningKeys gathers the public keys to check a run's signatures with:
// the public keys of cfg's agents and users, the key folder dir, and, when
// neither is given, the key folder of the data folder read (dataDir), if it
// has one. nil means no keys at all: signatures are not checked.
func SigningKeys(cfg *Config, dir, dataDir string) (ledger.Keys, error) {
	keys := ledger.Keys{}
	found := false
	if cfg != nil {
		for _, ic := range append(slices.Clone(cfg.Agents), cfg.Users...) {
			if ic.PublicKey == "" {
				continue
			}
			pub, err := broker.ParsePublicKey(ic.PublicKey)
			if err != nil {
				return nil, fmt.Errorf("config: %s: %w", ic.ID, err)
			}
			keys.Add(ic.ID, pub)
		}
		found = true
	}
	if dir == "" && !found && dataDir != "" {
		if fi, err := os.Stat(DataKeysDir(dataDir)); err == nil && fi.IsDir() {
			dir = DataKeysDir(dataDir)
		}
	}
	if dir != "" {
		read, err := broker.ReadKeyDir(dir)
		if err != nil {
			return nil, err
		}
		for id, pubs := range read {
			for _, pub := range pubs {
				keys.Add(id, pub)
			}
		}
		found = true
	}
	if !found {
		return nil, nil
	}
	return keys, nil
}

// SigningKeys returns the signing key of every registered identity that
// has one, to verify the runs of this gateway with.
func (g *Gateway) SigningKeys() ledger.Keys {
	keys := ledger.Keys{}
	for _, id := range g.registry.Dir.All() {
		if k := id.SigningKey(); k != nil {
			keys.Add(id.ID, k)
		}
	}
	if g.registry.Ingress != nil {
		keys.Add(schemas.ViaIngress, g.registry.Ingress)
	}
	return keys
}
