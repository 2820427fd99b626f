//! The data layer on both databases: SQLite (a temp file) and PostgreSQL (a throwaway server,
//! see `lilypad_gateway::testing`).

use lilypad_gateway::db::{Db, DbError, KeyCheck, NewJob, NewUpload};
use lilypad_gateway::testing::Postgres;

async fn ledger_keys_and_jobs(db: &Db) {
    // keys: shown once, stored hashed, revocable
    let (alice, key) = db.create_key("alice").await.unwrap();
    assert_eq!(alice.balance, 0);
    match db.check_key(&key.secret).await.unwrap() {
        KeyCheck::Valid { key_id, account } => {
            assert_eq!(key_id, key.id);
            assert_eq!(account.name, "alice");
        }
        other => panic!("{other:?}"),
    }
    let mut forged = key.secret.clone();
    forged.replace_range(forged.len() - 4.., "0000");
    assert_eq!(db.check_key(&forged).await.unwrap(), KeyCheck::Unknown);
    assert_eq!(db.check_key("not a key").await.unwrap(), KeyCheck::Unknown);
    assert!(db.revoke_key(&key.id).await.unwrap());
    assert!(!db.revoke_key(&key.id).await.unwrap(), "revoking twice is a no-op");
    assert_eq!(db.check_key(&key.secret).await.unwrap(), KeyCheck::Revoked { key_id: key.id.clone() });
    assert!(matches!(db.revoke_key("lpk_000000000000").await, Err(DbError::NoKey(_))));
    let (_, key2) = db.create_key("alice").await.unwrap();

    // credit, with u128 amounts beyond i64
    let big: u128 = 30_000_000_000_000_000_000;
    assert_eq!(db.add_credit("alice", big, Some("credit:one"), "top-up").await.unwrap(), Some(big));
    assert_eq!(db.add_credit("alice", big, Some("credit:one"), "top-up").await.unwrap(), None, "same ledger key: applied once");
    assert!(matches!(db.add_credit("bob", 1, None, "x").await, Err(DbError::NoAccount(_))));

    // a job charged, refunded once however often the refund is replayed
    let inputs = vec!["Message=hi".to_string()];
    let payment: u128 = 20_000_000_000_000_000_000;
    let new = || NewJob { deployment: "31337-aaaa-d1", account_id: &alice.id, key_id: &key2.id, idempotency_key: Some("req-1"), module: "lilysay:0.1.0", inputs: &inputs, payment };
    let (job, created) = db.create_job(new()).await.unwrap();
    assert!(created);
    assert_eq!(job.state, "submitting");
    assert_eq!(job.inputs, inputs);
    let (again, created) = db.create_job(new()).await.unwrap();
    assert!(!created, "the idempotency key returns the first job");
    assert_eq!(again.id, job.id);
    assert_eq!(db.account(&alice.id).await.unwrap().unwrap().balance, big - payment, "charged once");
    // not enough credit left for a second one: refused, nothing recorded
    let refused = db
        .create_job(NewJob { idempotency_key: None, ..new() })
        .await
        .unwrap_err();
    assert!(matches!(refused, DbError::InsufficientCredit { balance, needed, .. } if balance == big - payment && needed == payment), "{refused}");
    assert_eq!(db.jobs_of(&alice.id, "31337-aaaa-d1", 10).await.unwrap().len(), 1, "the refused job was not recorded");

    db.set_tx_nonce(&job.id, Some(7)).await.unwrap();
    assert_eq!(db.submitting_job_with_nonce("31337-aaaa-d1", 7).await.unwrap().map(|j| j.id), Some(job.id.clone()));
    assert!(db.link_chain_id(&job.id, "12").await.unwrap());
    assert!(!db.link_chain_id(&job.id, "12").await.unwrap(), "linked once");
    assert_eq!(db.job_by_chain_id("31337-aaaa-d1", "12").await.unwrap().unwrap().state, "open");
    assert_eq!(db.job(&job.id).await.unwrap().unwrap().deployment.as_deref(), Some("31337-aaaa-d1"));

    // another deployment (a new devnet, same database): its job numbers, nonces and
    // idempotency keys start again and never meet the first one's
    let d2 = || NewJob { deployment: "31337-aaaa-d2", payment: 1, ..new() };
    assert_eq!(db.submitting_job_with_nonce("31337-aaaa-d2", 7).await.unwrap(), None, "a nonce of another deployment");
    assert_eq!(db.job_by_chain_id("31337-aaaa-d2", "12").await.unwrap(), None, "a job number of another deployment");
    let (other, created) = db.create_job(d2()).await.unwrap();
    assert!(created && other.id != job.id, "the same idempotency key on another deployment is another request");
    db.set_tx_nonce(&other.id, Some(7)).await.unwrap();
    assert_eq!(db.submitting_job_with_nonce("31337-aaaa-d2", 7).await.unwrap().map(|j| j.id), Some(other.id.clone()));
    assert!(db.link_chain_id(&other.id, "12").await.unwrap(), "job number 12 again, on the new deployment");
    assert_eq!(db.job_by_chain_id("31337-aaaa-d2", "12").await.unwrap().map(|j| j.id), Some(other.id.clone()));
    assert_eq!(db.job_by_chain_id("31337-aaaa-d1", "12").await.unwrap().map(|j| j.id), Some(job.id.clone()));
    assert_eq!(db.jobs_of(&alice.id, "31337-aaaa-d2", 10).await.unwrap().iter().map(|j| j.id.clone()).collect::<Vec<_>>(), vec![other.id.clone()]);
    assert_eq!(db.jobs_in_state("31337-aaaa-d1", "open").await.unwrap().len(), 1);
    assert!(db.set_state(&other.id, "expired", None, None).await.unwrap());
    assert!(db.refund_job(&other, &format!("job:{}:refund", other.id), 1, "expired").await.unwrap().is_some());

    assert!(db.set_state(&job.id, "expired", None, None).await.unwrap());
    assert!(!db.set_state(&job.id, "matched", None, None).await.unwrap(), "a final state is never left");
    let key = format!("job:{}:refund", job.id);
    assert_eq!(db.refund_job(&job, &key, payment, "expired").await.unwrap(), Some(big));
    assert_eq!(db.refund_job(&job, &key, payment, "expired").await.unwrap(), None, "replayed refund is a no-op");
    let ledger = db.ledger(&alice.id, 10).await.unwrap();
    let mut kinds: Vec<(&str, i128)> = ledger.iter().map(|e| (e.kind.as_str(), e.amount)).collect();
    kinds.sort();
    assert_eq!(kinds, vec![("charge", -(payment as i128)), ("charge", -1), ("credit", big as i128), ("refund", 1), ("refund", payment as i128)]);
    assert_eq!(db.account(&alice.id).await.unwrap().unwrap().balance, big, "every charge refunded");

    // events once per key; the cursor
    assert!(db.add_job_event("e1", &job.id, "open", "x", Some(3)).await.unwrap());
    assert!(!db.add_job_event("e1", &job.id, "open", "x", Some(3)).await.unwrap());
    assert_eq!(db.cursor("market").await.unwrap(), None);
    db.set_cursor("market", 41).await.unwrap();
    db.set_cursor("market", 42).await.unwrap();
    assert_eq!(db.cursor("market").await.unwrap(), Some(42));
    assert_eq!(db.migrate().await.unwrap(), 0, "migrations apply once");
    assert_eq!(db.migrations().await.unwrap(), vec![1, 2, 3, 4]);

    providers_and_uploads(db, &alice.id, &key2.id, &job.id).await;
}

/// A job's provider (migration 3) and uploads (migration 4): charged with their row in one
/// transaction, refused whole when credit is short, refunded once when they fail, removed
/// when expired.
async fn providers_and_uploads(db: &Db, account: &str, key: &str, job: &str) {
    assert_eq!(db.job(job).await.unwrap().unwrap().provider, None, "no provider before a match");
    let provider = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
    db.set_provider(job, Some(provider)).await.unwrap();
    assert_eq!(db.job(job).await.unwrap().unwrap().provider.as_deref(), Some(provider));
    db.set_provider(job, None).await.unwrap();
    assert_eq!(db.job(job).await.unwrap().unwrap().provider, None, "given back: none again");

    let before = db.account(account).await.unwrap().unwrap().balance;
    let now = lilypad_gateway::db::now_ms();
    let new = |price: u128, expires_at: i64| NewUpload { account_id: account, key_id: key, cid: "bafkreiexample", kind: "file", bytes: 3 << 20, price, expires_at };
    let kept = db.create_upload(new(3, now + 60_000)).await.unwrap();
    assert_eq!((kept.state.as_str(), kept.price, kept.bytes), ("stored", 3, 3 << 20));
    assert_eq!(db.account(account).await.unwrap().unwrap().balance, before - 3, "charged");
    let refused = db.create_upload(new(before, now + 60_000)).await.unwrap_err();
    assert!(matches!(refused, DbError::InsufficientCredit { needed, .. } if needed == before), "{refused}");
    assert_eq!(db.uploads_of(account, 10).await.unwrap().len(), 1, "the refused upload was not recorded");
    assert_eq!(db.account(account).await.unwrap().unwrap().balance, before - 3, "nor charged");

    let failed = db.create_upload(new(5, now + 60_000)).await.unwrap();
    db.fail_upload(&failed, "the IPFS node was down").await.unwrap();
    db.fail_upload(&failed, "the IPFS node was down").await.unwrap();
    assert_eq!(db.upload(&failed.id).await.unwrap().unwrap().state, "failed");
    assert_eq!(db.account(account).await.unwrap().unwrap().balance, before - 3, "refunded once");
    let expired = db.create_upload(new(1, now - 1)).await.unwrap();
    assert_eq!(db.uploads_to_remove(now).await.unwrap().iter().map(|u| u.id.clone()).collect::<Vec<_>>(), vec![expired.id.clone()], "only the expired one");
    assert_eq!(db.kept_upload_ids(now).await.unwrap(), vec![kept.id.clone()]);
    assert!(db.set_upload_state(&expired.id, "stored", "expired").await.unwrap());
    assert!(db.uploads_to_remove(now).await.unwrap().is_empty());
    let keys: Vec<String> = db.ledger(account, 20).await.unwrap().into_iter().map(|e| e.key).filter(|k| k.starts_with("upload:")).collect();
    assert_eq!(keys.len(), 4, "three charges and one refund: {keys:?}");
    assert!(keys.contains(&format!("upload:{}:refund", failed.id)));
}

/// A database of the first schema (jobs not keyed by deployment), upgraded: its jobs keep their
/// on-chain numbers and are adopted only by the one deployment it followed.
#[tokio::test]
async fn jobs_from_before_deployments_are_adopted_only_by_the_deployment_followed() {
    use sqlx::Executor as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    sqlx::any::install_default_drivers();
    {
        let pool = sqlx::AnyPool::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
        let v1: String = include_str!("../migrations/0001_initial.sql").lines().map(|l| l.split("--").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        for statement in v1.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            pool.execute(statement).await.unwrap();
        }
        for statement in [
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            "INSERT INTO schema_migrations VALUES (1, 'initial', 0)",
            "INSERT INTO accounts VALUES ('acc_1', 'alice', '0', 0)",
            "INSERT INTO jobs (id, account_id, key_id, module, inputs, payment, state, tx_nonce, chain_id, created_at, updated_at) \
             VALUES ('gj_old', 'acc_1', 'lpk_x', 'lilysay:0.1.0', '[]', '5', 'matched', 3, '5', 0, 0)",
            "INSERT INTO cursors VALUES ('market@31337-aaaa-d1', 40)",
        ] {
            pool.execute(statement).await.unwrap();
        }
        pool.close().await;
    }
    let db = Db::connect(path.to_str().unwrap()).await.unwrap();
    assert_eq!(db.migrations().await.unwrap(), vec![1, 2, 3, 4]);
    let old = db.job("gj_old").await.unwrap().unwrap();
    assert_eq!((old.chain_id.as_deref(), old.deployment.as_deref()), (Some("5"), None), "the job number kept, no deployment yet");
    assert_eq!(db.unkeyed_jobs().await.unwrap(), 1);
    // another deployment (a new devnet against this database): not its job
    assert_eq!(db.adopt_unkeyed_jobs("31337-aaaa-d2", "market", "market@31337-aaaa-d2").await.unwrap(), 0);
    assert_eq!(db.job_by_chain_id("31337-aaaa-d2", "5").await.unwrap(), None);
    // the deployment whose cursor is the only one: adopted
    assert_eq!(db.adopt_unkeyed_jobs("31337-aaaa-d1", "market", "market@31337-aaaa-d1").await.unwrap(), 1);
    assert_eq!(db.job_by_chain_id("31337-aaaa-d1", "5").await.unwrap().map(|j| j.id), Some("gj_old".to_string()));
    assert_eq!(db.unkeyed_jobs().await.unwrap(), 0);
    // a database that followed two deployments adopts nothing
    db.set_cursor("market@31337-aaaa-d3", 7).await.unwrap();
    assert_eq!(db.adopt_unkeyed_jobs("31337-aaaa-d1", "market", "market@31337-aaaa-d1").await.unwrap(), 0);
}

#[tokio::test]
async fn the_data_layer_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/gateway.db");
    let db = Db::connect(path.to_str().unwrap()).await.unwrap();
    ledger_keys_and_jobs(&db).await;
    drop(db);
    // reopening keeps everything
    let db = Db::connect(path.to_str().unwrap()).await.unwrap();
    assert_eq!(db.account_by_name("alice").await.unwrap().unwrap().balance, 30_000_000_000_000_000_000 - 4, "less the two uploads kept charged");
}

#[tokio::test]
async fn the_data_layer_on_postgres() {
    let pg = Postgres::start().unwrap_or_else(|e| panic!("PostgreSQL is needed for this test: {e}"));
    let url = pg.database("gateway_db_test").unwrap();
    let db = Db::connect(&url).await.unwrap();
    assert_eq!(db.backend(), lilypad_gateway::db::Backend::Postgres);
    ledger_keys_and_jobs(&db).await;
}

#[tokio::test]
async fn two_writers_never_lose_a_credit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    let a = std::sync::Arc::new(Db::connect(path.to_str().unwrap()).await.unwrap());
    let b = std::sync::Arc::new(Db::connect(path.to_str().unwrap()).await.unwrap());
    a.ensure_account("carol").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20u128 {
        let db = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { db.add_credit("carol", 1 + i, None, "t").await.unwrap() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(a.account_by_name("carol").await.unwrap().unwrap().balance, (1..=20).sum::<u128>());
}
