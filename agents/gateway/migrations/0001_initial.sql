-- Portable SQL: runs as is on SQLite and PostgreSQL. Amounts are token base units as decimal
-- strings (u128 does not fit BIGINT); times are Unix milliseconds.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    balance TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE ledger (
    entry_key TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    kind TEXT NOT NULL,
    amount TEXT NOT NULL,
    balance_after TEXT NOT NULL,
    job_id TEXT,
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ledger_by_account ON ledger (account_id, created_at);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    key_id TEXT NOT NULL,
    idempotency_key TEXT,
    module TEXT NOT NULL,
    inputs TEXT NOT NULL,
    payment TEXT NOT NULL,
    state TEXT NOT NULL,
    tx_nonce BIGINT,
    chain_id TEXT UNIQUE,
    data_id TEXT,
    outputs_at BIGINT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (account_id, idempotency_key)
);
CREATE INDEX jobs_by_account ON jobs (account_id, created_at);
CREATE INDEX jobs_by_state ON jobs (state);
CREATE TABLE job_events (
    event_key TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs(id),
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    block BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX job_events_by_job ON job_events (job_id, created_at);
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    block BIGINT NOT NULL
);
