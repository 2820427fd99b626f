//! Uploads on disk: staged, charged, published into the gateway's blockstore and served, then
//! removed when they expire, keeping the blocks a kept upload shares (a SQLite database and
//! real folders; no IPFS node configured).

use std::time::Duration;

use bytes::Bytes;
use lilypad_gateway::db::{now_ms, Db, NewUpload};
use lilypad_gateway::uploads::{UploadError, UploadKind, UploadOptions, Uploads};

fn body(data: Vec<u8>) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    // in chunks, as a client sends it
    let chunks: Vec<Result<Bytes, std::io::Error>> = data.chunks(1000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures_util::stream::iter(chunks)
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[tokio::test]
async fn expired_uploads_are_removed_and_shared_blocks_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(dir.path().join("gw.db").to_str().unwrap()).await.unwrap();
    let (account, key) = db.create_key("alice").await.unwrap();
    db.add_credit("alice", 1_000_000, None, "t").await.unwrap();
    let options = UploadOptions { max_bytes: 1 << 20, price_per_mib: 1 << 20, retention: Duration::from_secs(3600), ipfs_api: None };
    let uploads = Uploads::open(&dir.path().join("uploads"), options).unwrap();
    let shared = vec![b's'; 300_000]; // two chunks
    let unique = b"only in the expired upload\n".to_vec();

    // a folder upload that expires, and a file upload kept, sharing the file's blocks
    let old = uploads.stage(UploadKind::Folder, body(tar_of(&[("shared.bin", &shared), ("unique.txt", &unique)]))).await.unwrap();
    let kept = uploads.stage(UploadKind::File, body(shared.clone())).await.unwrap();
    assert_eq!(kept.cid, lilypad_store::cid_of_path(&{
        let p = dir.path().join("shared.bin");
        std::fs::write(&p, &shared).unwrap();
        p
    }).unwrap(), "the CID of the file itself");
    let (old_cid, kept_cid) = (old.cid, kept.cid);
    let (old_cid_text, kept_cid_text) = (old_cid.to_string(), kept_cid.to_string());
    let old_row = db
        .create_upload(NewUpload { account_id: &account.id, key_id: &key.id, cid: &old_cid_text, kind: "folder", bytes: old.bytes, price: uploads.price_of(old.bytes), expires_at: now_ms() - 1 })
        .await
        .unwrap();
    let kept_row = db
        .create_upload(NewUpload { account_id: &account.id, key_id: &key.id, cid: &kept_cid_text, kind: "file", bytes: kept.bytes, price: uploads.price_of(kept.bytes), expires_at: now_ms() + 3_600_000 })
        .await
        .unwrap();
    assert_eq!(kept_row.price, shared.len() as u128, "1 unit per byte at 2^20 per MiB");
    uploads.publish(&old_row.id, old).await.unwrap();
    uploads.publish(&kept_row.id, kept).await.unwrap();
    let store = uploads.store();
    assert!(store.has(&old_cid).unwrap() && store.has(&kept_cid).unwrap());
    let unique_cid = lilypad_store::cid_of_path(&{
        let p = dir.path().join("unique.txt");
        std::fs::write(&p, &unique).unwrap();
        p
    })
    .unwrap();
    assert!(store.has(&unique_cid).unwrap());
    assert!(std::fs::read_dir(dir.path().join("uploads/staging")).unwrap().next().is_none(), "staging folders removed once published");

    assert_eq!(uploads.collect_garbage(&db).await.unwrap(), 1);
    assert!(!store.has(&old_cid).unwrap(), "the expired folder's root is gone");
    assert!(!store.has(&unique_cid).unwrap(), "and the file only it had");
    assert!(store.has(&kept_cid).unwrap(), "the kept upload's blocks stay, shared ones too");
    let dest = dir.path().join("fetched");
    let server = lilypad_store::outputs_server::serve_trustless(store.clone(), ([127, 0, 0, 1], 0).into(), &Default::default()).await.unwrap();
    lilypad_store::fetch(&format!("http://{}", server.addr), &kept_cid, &dest).await.unwrap();
    assert_eq!(std::fs::read(dest.join(kept_cid.to_string())).unwrap(), shared, "still whole");
    assert_eq!(db.upload(&old_row.id).await.unwrap().unwrap().state, "expired");
    assert_eq!(uploads.collect_garbage(&db).await.unwrap(), 0, "once");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = UploadOptions { max_bytes: 4096, ..Default::default() };
    let uploads = Uploads::open(&dir.path().join("uploads"), options).unwrap();
    let err = uploads.stage(UploadKind::File, body(vec![1; 4097])).await.err().unwrap();
    assert!(matches!(err, UploadError::TooLarge { limit: 4096 }), "{err}");
    assert!(uploads.stage(UploadKind::File, body(vec![1; 4096])).await.is_ok(), "the limit itself is allowed");
    assert!(std::fs::read_dir(dir.path().join("uploads/staging")).unwrap().next().is_none(), "no staging folder left");
}
