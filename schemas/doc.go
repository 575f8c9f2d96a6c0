// Package schemas holds Tollgate's wire contracts: the submission envelope an
// agent publishes, the delivery the gateway stamps with governance context,
// the ledger events of a run, their JSON Schemas, the Cedar schema, and the
// canonical encodings that signatures and the ledger hash chain are computed
// over.
//
// Every type carries a schema version (field "v"). Version 1 is the only one
// defined; decoders reject any other with ErrVersion so that a newer peer is
// told, not misread.
package schemas
