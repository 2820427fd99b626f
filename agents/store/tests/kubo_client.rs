//! KuboClient against a small fake of Kubo's RPC API that checks the shape of each request.
//!
//! The fake `add` rebuilds the uploaded tree from the multipart parts exactly as Kubo reads them
//! (URL-unescaped filenames, `application/x-directory` parts for folders) and answers with the
//! CID of what it rebuilt, so the test proves the upload carries the whole tree faithfully.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use lilypad_store::{cid_of_path, Cid, KuboClient, StoreError, CHUNK_SIZE};

#[derive(Debug, Clone)]
struct Part {
    field: String,
    filename: String,
    content_type: String,
    len: usize,
}

#[derive(Default)]
struct Fake {
    /// Query strings and parts of each add.
    adds: Vec<(HashMap<String, String>, Vec<Part>)>,
    pins: Vec<String>,
    blocks: HashMap<String, Vec<u8>>,
    workdir: PathBuf,
}

type Shared = Arc<Mutex<Fake>>;

/// Go's url.QueryUnescape.
fn query_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn kubo_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "Message": message, "Code": 0, "Type": "error" });
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn version() -> Response {
    let body =
        r#"{"Version":"0.36.0","Commit":"","Repo":"16","System":"amd64/linux","Golang":"go1.24"}"#;
    ([("content-type", "application/json")], body).into_response()
}

async fn add(
    State(fake): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let ct = headers["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
    let workdir = {
        let f = fake.lock().unwrap();
        f.workdir.join(format!("add-{}", f.adds.len()))
    };
    fs::create_dir_all(&workdir).unwrap();
    let mut parts = Vec::new();
    let mut order = Vec::new();
    while let Some(field) = multipart.next_field().await.unwrap() {
        let name = field.name().unwrap_or_default().to_string();
        let filename = field.file_name().unwrap_or_default().to_string();
        let content_type = field.content_type().unwrap_or_default().to_string();
        let data = field.bytes().await.unwrap();
        let rel = query_unescape(&filename);
        assert!(!rel.starts_with('/') && !rel.split('/').any(|c| c == ".." || c.is_empty()));
        let path = workdir.join(&rel);
        if content_type == "application/x-directory" {
            assert!(data.is_empty());
            fs::create_dir(&path).unwrap(); // parent must have come first
        } else {
            assert_eq!(content_type, "application/octet-stream");
            assert!(
                path.parent().unwrap().is_dir(),
                "file before its folder: {rel}"
            );
            fs::write(&path, &data).unwrap();
        }
        order.push(rel);
        parts.push(Part {
            field: name,
            filename,
            content_type,
            len: data.len(),
        });
    }
    // Answer like Kubo: one line per entry, children before parents, the root last.
    let mut lines = Vec::new();
    for rel in order.iter().rev() {
        let cid = cid_of_path(&workdir.join(rel)).unwrap();
        lines.push(
            serde_json::json!({ "Name": rel, "Hash": cid.to_string(), "Size": "0" }).to_string(),
        );
    }
    fake.lock().unwrap().adds.push((query, parts));
    (
        [("content-type", "application/json")],
        lines.join("\n") + "\n",
    )
        .into_response()
}

async fn pin_add(State(fake): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let arg = q.get("arg").cloned().unwrap_or_default();
    assert_eq!(q.get("recursive").map(String::as_str), Some("true"));
    if arg.starts_with("bafkrei") {
        fake.lock().unwrap().pins.push(arg.clone());
        (
            [("content-type", "application/json")],
            format!(r#"{{"Pins":["{arg}"]}}"#),
        )
            .into_response()
    } else {
        kubo_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("pin: {arg}: block was not found locally (offline)"),
        )
    }
}

async fn cat(State(fake): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let arg = q.get("arg").cloned().unwrap_or_default();
    match fake.lock().unwrap().blocks.get(&arg) {
        Some(b) => b.clone().into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "upstream Kubo unavailable").into_response(),
    }
}

async fn block_get(
    State(fake): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let arg = q.get("arg").cloned().unwrap_or_default();
    match fake.lock().unwrap().blocks.get(&arg) {
        Some(b) => b.clone().into_response(),
        None => kubo_error(StatusCode::INTERNAL_SERVER_ERROR, "block not found"),
    }
}

async fn start_fake(workdir: &Path) -> (String, Shared) {
    let fake: Shared = Arc::new(Mutex::new(Fake {
        workdir: workdir.to_path_buf(),
        ..Default::default()
    }));
    let app = Router::new()
        .route("/api/v0/version", post(version))
        .route("/api/v0/add", post(add))
        .route("/api/v0/pin/add", post(pin_add))
        .route("/api/v0/cat", post(cat))
        .route("/api/v0/block/get", post(block_get))
        .layer(DefaultBodyLimit::disable())
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), fake)
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_folder_sends_kubo_shaped_multipart() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, fake) = start_fake(&tmp.path().join("fake")).await;
    let client = KuboClient::new(&url).unwrap();
    assert_eq!(client.version().await.unwrap(), "0.36.0");

    let src = tmp.path().join("job outputs");
    write(&src.join("result.txt"), b"42\n");
    write(
        &src.join("sub dir/données.bin"),
        &vec![9u8; 2 * CHUNK_SIZE + 5],
    );
    write(&src.join("sub dir/a+b%c.txt"), b"odd name\n");
    fs::create_dir_all(src.join("empty")).unwrap();
    write(&src.join(".hidden"), b"");

    let cid = client.add_path(&src).await.unwrap();
    assert_eq!(
        cid,
        cid_of_path(&src).unwrap(),
        "Kubo (fake) rebuilt the same tree"
    );

    let fake = fake.lock().unwrap();
    let (query, parts) = &fake.adds[0];
    for (k, v) in [
        ("cid-version", "1"),
        ("raw-leaves", "true"),
        ("chunker", "size-262144"),
        ("hash", "sha2-256"),
        ("wrap-with-directory", "false"),
        ("recursive", "true"),
        ("pin", "true"),
    ] {
        assert_eq!(query.get(k).map(String::as_str), Some(v), "query {k}");
    }
    let shape: Vec<_> = parts
        .iter()
        .map(|p| (p.filename.as_str(), p.content_type.as_str()))
        .collect();
    assert_eq!(
        shape,
        [
            ("job+outputs", "application/x-directory"),
            ("job+outputs%2F.hidden", "application/octet-stream"),
            ("job+outputs%2Fempty", "application/x-directory"),
            ("job+outputs%2Fresult.txt", "application/octet-stream"),
            ("job+outputs%2Fsub+dir", "application/x-directory"),
            (
                "job+outputs%2Fsub+dir%2Fa%2Bb%25c.txt",
                "application/octet-stream"
            ),
            (
                "job+outputs%2Fsub+dir%2Fdonn%C3%A9es.bin",
                "application/octet-stream"
            ),
        ]
    );
    assert!(parts.iter().all(|p| p.field == "file"));
    assert_eq!(parts[6].len, 2 * CHUNK_SIZE + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_single_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, fake) = start_fake(&tmp.path().join("fake")).await;
    let client = KuboClient::new(&format!("{url}/api/v0")).unwrap();
    let file = tmp.path().join("hello");
    fs::write(&file, b"hello\n").unwrap();
    let cid = client.add_path(&file).await.unwrap();
    assert_eq!(
        cid.to_string(),
        "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"
    );
    let fake = fake.lock().unwrap();
    let (query, parts) = &fake.adds[0];
    assert_eq!(query.get("recursive"), None);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].filename, "hello");
    assert_eq!(parts[0].content_type, "application/octet-stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_refuses_symlinks_before_sending() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, fake) = start_fake(&tmp.path().join("fake")).await;
    let src = tmp.path().join("out");
    write(&src.join("ok"), b"ok");
    std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
    let err = KuboClient::new(&url)
        .unwrap()
        .add_path(&src)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Symlink { .. }), "{err}");
    assert!(fake.lock().unwrap().adds.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_cat_block_get_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, fake) = start_fake(&tmp.path().join("fake")).await;
    let client = KuboClient::new(&url).unwrap();
    let hello: Cid =
        lilypad_store::parse_cid("bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am")
            .unwrap();
    let dir: Cid =
        lilypad_store::parse_cid("bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354")
            .unwrap();

    client.pin_add(&hello).await.unwrap();
    assert_eq!(fake.lock().unwrap().pins, vec![hello.to_string()]);

    // Kubo's own error: a fatal KuboApi error with its message.
    let err = client.pin_add(&dir).await.unwrap_err();
    match &err {
        StoreError::KuboApi {
            status, message, ..
        } => {
            assert_eq!(*status, 500);
            assert!(message.contains("not found locally"), "{message}");
        }
        other => panic!("expected KuboApi, got {other}"),
    }
    assert!(!err.is_retryable());

    fake.lock()
        .unwrap()
        .blocks
        .insert(hello.to_string(), b"hello\n".to_vec());
    assert_eq!(&client.cat(&hello).await.unwrap()[..], b"hello\n");
    assert_eq!(&client.block_get(&hello).await.unwrap()[..], b"hello\n");

    // A proxy in front of Kubo failing: retryable.
    let err = client.cat(&dir).await.unwrap_err();
    assert!(
        matches!(err, StoreError::KuboApi { status: 503, .. }),
        "{err}"
    );
    assert!(err.is_retryable());

    // block/get verifies what it receives.
    fake.lock()
        .unwrap()
        .blocks
        .insert(dir.to_string(), b"not the block".to_vec());
    let err = client.block_get(&dir).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Verification { cid, .. } if cid == dir),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn unreachable_node_is_retryable() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = KuboClient::new(&format!("http://{closed}")).unwrap();
    let err = client.version().await.unwrap_err();
    assert!(matches!(err, StoreError::Network { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&closed.to_string()));
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("f"), b"x").unwrap();
    let err = client.add_path(&tmp.path().join("f")).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
