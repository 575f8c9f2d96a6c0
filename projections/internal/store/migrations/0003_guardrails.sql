-- Guardrails and taint (issue 13): what the guardrails found in a hop's
-- message and in its reply, and whether the hop carried content from an
-- untrusted source (docs/guardrails.md). A tainted reply taints the hop of
-- the caller it answers, so a hop's taint can grow until it closes: the
-- row's last version has it all.
--
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: the migrator checks
-- system.columns itself for statements written this way, so they are safe
-- to run again.
ALTER TABLE {db}.hops ADD COLUMN IF NOT EXISTS tainted UInt8;
ALTER TABLE {db}.hops ADD COLUMN IF NOT EXISTS taint_sources Array(String);
ALTER TABLE {db}.hops ADD COLUMN IF NOT EXISTS guardrail_verdict String;
ALTER TABLE {db}.hops ADD COLUMN IF NOT EXISTS guardrail_rules Array(String);
ALTER TABLE {db}.hops ADD COLUMN IF NOT EXISTS reply_guardrail_verdict String;
ALTER TABLE {db}.hops ADD COLUMN IF NOT EXISTS reply_guardrail_rules Array(String);
