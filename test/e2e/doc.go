// Package e2e holds Tollgate's cross-package end-to-end tests: governed
// runs driven through a real enforcer on a real embedded NATS JetStream,
// with agents on their own credentials, projected into a real ClickHouse
// (TOLLGATE_CLICKHOUSE_DSN; test/run starts one). The package has no code
// of its own; the tests are in package e2e_test.
package e2e
