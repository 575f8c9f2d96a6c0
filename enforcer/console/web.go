package console

import "embed"

// webDist is the built front end (web/: npm run build writes dist/).
//
//go:embed dist
var webDist embed.FS
