// Package deploy holds Tollgate's deployment files: example gateway config
// and policies, NATS and ClickHouse configs, service files and dev scripts.
// The Go package embeds the example policies so the CLI's demo runs from
// any folder.
package deploy

import (
	"embed"
	"io/fs"
)

//go:embed policies/*.cedar
var files embed.FS

// Policies returns the example Cedar policies, named policies/<file>.cedar.
func Policies() fs.FS { return files }
