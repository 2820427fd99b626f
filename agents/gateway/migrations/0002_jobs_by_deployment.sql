-- Jobs keyed by the market deployment they were sent to (chain id, market address, deployment
-- block hash: `ChainKey::folder_name`, as every agent's saved state is). A gateway restarted
-- against another deployment (a new devnet) with the same database must not link, follow,
-- reconcile or settle the old deployment's jobs: on-chain job numbers and the gateway
-- account's nonces start again on each.
-- `jobs.chain_id` (the on-chain job number) was UNIQUE across deployments: its values move to
-- `onchain_id`, unique per deployment, and `chain_id` stays, always NULL (SQLite cannot drop a
-- column that has a UNIQUE constraint).
-- Rows from before have no deployment (NULL) until the gateway adopts them (see Db::adopt_unkeyed_jobs).
ALTER TABLE jobs ADD COLUMN deployment TEXT;
ALTER TABLE jobs ADD COLUMN onchain_id TEXT;
UPDATE jobs SET onchain_id = chain_id, chain_id = NULL;
CREATE UNIQUE INDEX jobs_by_onchain_id ON jobs (deployment, onchain_id);
CREATE INDEX jobs_by_deployment_state ON jobs (deployment, state);
