package schemas

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
)

//go:embed cedar/tollgate.cedarschema
var cedarSchema []byte

//go:embed jsonschema
var jsonSchemas embed.FS

// CedarSchema returns the Cedar schema (human-readable format) that every
// policy and authorization request is validated against.
func CedarSchema() []byte { return bytes.Clone(cedarSchema) }

// JSONSchemaFS returns the JSON Schemas of the wire contracts, rooted at the
// folder that holds envelope.json, delivery.json, event.json and events/.
func JSONSchemaFS() fs.FS {
	sub, err := fs.Sub(jsonSchemas, "jsonschema")
	if err != nil { // the folder is embedded at build time
		panic(fmt.Sprintf("schemas: embedded folder missing: %v", err))
	}
	return sub
}

// JSONSchemaBaseURI is the $id prefix of the JSON Schemas.
const JSONSchemaBaseURI = "https://tollgate.dev/schemas/v1/"
