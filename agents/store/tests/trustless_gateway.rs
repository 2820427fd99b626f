//! The outputs server against the IPFS Trustless Gateway specification
//! (https://specs.ipfs.tech/http-gateways/trustless-gateway/): formats, dag-scope, headers,
//! statuses and the probe path, on 127.0.0.1.

use std::fs;
use std::io::Cursor;

use lilypad_store::outputs_server::serve_trustless;
use lilypad_store::{add_path, cid_of_path, Cid, DiskBlockstore, ServerLimits, CHUNK_SIZE};

/// The CIDs of a CARv1's blocks, in order (after checking its header names `root`).
fn car_blocks(car: &[u8], root: &Cid) -> Vec<Cid> {
    fn varint(data: &[u8], pos: &mut usize) -> usize {
        let (mut v, mut shift) = (0usize, 0);
        loop {
            let b = data[*pos];
            *pos += 1;
            v |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
    let mut pos = 0;
    let header_len = varint(car, &mut pos);
    let header = &car[pos..pos + header_len];
    assert!(
        header
            .windows(root.to_bytes().len())
            .any(|w| w == root.to_bytes()),
        "header names the root"
    );
    pos += header_len;
    let mut out = Vec::new();
    while pos < car.len() {
        let len = varint(car, &mut pos);
        let mut cursor = Cursor::new(&car[pos..pos + len]);
        out.push(Cid::read_bytes(&mut cursor).unwrap());
        pos += len;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trustless_gateway_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("outputs");
    fs::create_dir_all(src.join("sub")).unwrap();
    let big: Vec<u8> = (0..2 * CHUNK_SIZE + 3).map(|i| (i % 253) as u8).collect();
    fs::write(src.join("sub/big.bin"), &big).unwrap();
    fs::write(src.join("hello.txt"), b"hello\n").unwrap();
    let store = DiskBlockstore::open(tmp.path().join("store")).unwrap();
    let root = add_path(&src, &store).unwrap();
    let sub = cid_of_path(&src.join("sub")).unwrap();
    let big_cid = cid_of_path(&src.join("sub/big.bin")).unwrap();
    let server = serve_trustless(
        store.clone(),
        "127.0.0.1:0".parse().unwrap(),
        &ServerLimits::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let get = |url: String, accept: Option<&'static str>| {
        let mut req = http.get(format!("{base}{url}"));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        async move { req.send().await.unwrap() }
    };

    // Raw block by Accept: type, disposition, etag, immutable cache, nosniff, Content-Location.
    let r = get(format!("/ipfs/{root}"), Some("application/vnd.ipld.raw")).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/vnd.ipld.raw");
    assert_eq!(
        h["content-disposition"],
        format!("attachment; filename=\"{root}.bin\"").as_str()
    );
    assert_eq!(h["etag"], format!("\"{root}.raw\"").as_str());
    assert_eq!(h["cache-control"], "public, max-age=29030400, immutable");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(
        h["content-location"],
        format!("/ipfs/{root}?format=raw").as_str()
    );
    assert_eq!(h["x-ipfs-roots"], root.to_string().as_str());
    assert_eq!(r.bytes().await.unwrap(), store.get(&root).unwrap());

    // CAR, dag-scope=all (default): the whole DAG, DFS, each block once; spec content type.
    let r = get(format!("/ipfs/{root}?format=car"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.ipld.car; version=1; order=dfs; dups=n"
    );
    assert!(r.headers()["etag"].to_str().unwrap().starts_with("W/\""));
    assert!(
        r.headers().get("content-location").is_none(),
        "format came from the query"
    );
    let all = car_blocks(&r.bytes().await.unwrap(), &root);
    // root, hello.txt, sub, big.bin node, its 3 leaves
    assert_eq!(all.len(), 7);
    assert_eq!(all[0], root);

    // A path: the blocks that verify it come first; X-Ipfs-Path and X-Ipfs-Roots follow it.
    let path = format!("/ipfs/{root}/sub/big.bin");
    let r = get(format!("{path}?format=car&dag-scope=block"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ipfs-path"], path.as_str());
    assert_eq!(
        r.headers()["x-ipfs-roots"],
        format!("{root},{sub},{big_cid}").as_str()
    );
    let etag_block = r.headers()["etag"].clone();
    assert_eq!(
        car_blocks(&r.bytes().await.unwrap(), &root),
        vec![root, sub, big_cid]
    );
    // entity: the path, then the whole file.
    let r = get(format!("{path}?format=car&dag-scope=entity"), None).await;
    assert_ne!(
        r.headers()["etag"],
        etag_block,
        "the etag depends on the scope"
    );
    let blocks = car_blocks(&r.bytes().await.unwrap(), &root);
    assert_eq!(blocks.len(), 3 + 3);
    // entity on a folder: just the folder node.
    let r = get(format!("/ipfs/{root}?format=car&dag-scope=entity"), None).await;
    assert_eq!(car_blocks(&r.bytes().await.unwrap(), &root), vec![root]);

    // Accept with CAR parameters; a CAR variant not served is 406.
    let r = get(
        format!("/ipfs/{root}"),
        Some("application/vnd.ipld.car; version=1; order=dfs; dups=n"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-location"],
        format!("/ipfs/{root}?format=car").as_str()
    );
    for bad in [
        "application/vnd.ipld.car; version=2",
        "application/vnd.ipld.car; dups=y",
        "application/x-tar",
    ] {
        assert_eq!(
            get(format!("/ipfs/{root}"), Some(bad)).await.status(),
            406,
            "{bad}"
        );
    }

    // The probe path: identity CID, an empty block / a CAR with no blocks.
    let probe: Cid = "bafkqaaa".parse().unwrap();
    let r = get("/ipfs/bafkqaaa?format=raw".into(), None).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = get("/ipfs/bafkqaaa?format=car".into(), None).await;
    assert_eq!(r.status(), 200);
    assert!(car_blocks(&r.bytes().await.unwrap(), &probe).is_empty());

    // HEAD: headers, no body.
    let r = http
        .head(format!("{base}/ipfs/{root}?format=car"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());

    // Statuses: 400 bad CID, 404 missing root and missing path, 412 only-if-cached, 501
    // entity-bytes, 304 conditional.
    assert_eq!(
        get("/ipfs/not-a-cid?format=raw".into(), None)
            .await
            .status(),
        400
    );
    let absent = "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba";
    assert_eq!(
        get(format!("/ipfs/{absent}?format=raw"), None)
            .await
            .status(),
        404
    );
    assert_eq!(
        get(format!("/ipfs/{absent}?format=car"), None)
            .await
            .status(),
        404
    );
    assert_eq!(
        get(format!("/ipfs/{root}/nope?format=car"), None)
            .await
            .status(),
        404
    );
    let r = http
        .get(format!("{base}/ipfs/{absent}?format=raw"))
        .header("cache-control", "only-if-cached")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    assert_eq!(
        get(format!("/ipfs/{root}?format=car&entity-bytes=0:10"), None)
            .await
            .status(),
        501
    );
    let r = http
        .get(format!("{base}/ipfs/{root}?format=raw"))
        .header("if-none-match", format!("\"{root}.raw\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
}
