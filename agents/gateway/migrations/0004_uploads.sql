-- Files and folders uploaded through POST /api/v1/uploads (issue 17): imported as UnixFS (the
-- CID `ipfs add --cid-version=1` prints), kept in the gateway's blockstore (served at
-- /ipfs/<cid>) and put on the configured IPFS node, charged to the account per MiB. The charge
-- is the ledger entry `upload:<id>:charge` written in the same transaction as this row; a
-- failed upload is refunded as `upload:<id>:refund`.
-- state: stored | failed | expired. Blocks of uploads past expires_at are removed from the
-- gateway's blockstore (those no live upload shares).
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    key_id TEXT NOT NULL,
    cid TEXT NOT NULL,
    kind TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    price TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX uploads_by_account_cid ON uploads (account_id, cid);
CREATE INDEX uploads_by_state_expiry ON uploads (state, expires_at)
