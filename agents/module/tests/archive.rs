//! Image archives read strictly before the engine sees them (no Docker engine needed; the
//! engine side is in `tests/docker.rs`). Each archive is built here byte by byte, attacks
//! included: hidden and absolute manifest entries, duplicate names, sparse and compressed
//! layer bombs.

use std::io::Write;
use std::time::{Duration, Instant};

use lilypad_module::{inspect_archive, inspect_archive_with, ArchiveLimits, ImageError};
use serde_json::json;
use sha2::{Digest, Sha256};

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", alloy::hex::encode(Sha256::digest(data)))
}

/// Octal tar number field of `len` bytes (NUL-terminated).
fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}\0", w = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

/// Appends an entry whose raw name is `name`, exactly as given (the `tar` crate's own path
/// setters refuse `..` and absolute names, which is what these tests need to write).
fn raw_entry(b: &mut tar::Builder<impl Write>, name: &[u8], ty: tar::EntryType, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(ty);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// A layer: an uncompressed tar of `files`.
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        raw_entry(&mut b, name.as_bytes(), tar::EntryType::Regular, data);
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A layer holding one GNU sparse file that declares `real` bytes and stores one block.
fn sparse_layer(real: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..4].copy_from_slice(b"huge");
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(512);
    h.set_mode(0o644);
    {
        let gnu = h.as_gnu_mut().unwrap();
        octal(&mut gnu.realsize, real);
        octal(&mut gnu.sparse[0].offset, real - 512);
        octal(&mut gnu.sparse[0].numbytes, 512);
    }
    h.set_cksum();
    b.append(&h, &[0u8; 512][..]).unwrap();
    b.into_inner().unwrap()
}

/// An image archive as `docker save` writes it: `manifest.json` naming one image (with
/// `tags`), its config `<digest>.json` (diff ids from `diff_ids`, or computed from the
/// uncompressed `layers`), the layers as stored (`stored`), then the `extra` raw entries.
struct Image {
    layers: Vec<Vec<u8>>,
    stored: Vec<Vec<u8>>,
    tags: Vec<String>,
    extra: Vec<(Vec<u8>, tar::EntryType, Vec<u8>)>,
    manifest: Option<serde_json::Value>,
}

impl Image {
    fn new(layers: Vec<Vec<u8>>) -> Image {
        Image { stored: layers.clone(), layers, tags: vec!["lilypad/a:1".into()], extra: vec![], manifest: None }
    }

    fn config(&self) -> Vec<u8> {
        let diff_ids: Vec<String> = self.layers.iter().map(|l| sha256(l)).collect();
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids }
        }))
        .unwrap()
    }

    fn id(&self) -> String {
        sha256(&self.config())
    }

    fn manifest(&self) -> serde_json::Value {
        let config = self.config();
        let hex = &sha256(&config)[7..];
        let layers: Vec<String> = (0..self.stored.len()).map(|i| format!("l{i}/layer.tar")).collect();
        self.manifest.clone().unwrap_or_else(|| json!([{ "Config": format!("{hex}.json"), "RepoTags": self.tags, "Layers": layers }]))
    }

    fn write(&self) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(f.reopen().unwrap());
        let config = self.config();
        let hex = &sha256(&config)[7..];
        raw_entry(&mut b, format!("{hex}.json").as_bytes(), tar::EntryType::Regular, &config);
        for (i, l) in self.stored.iter().enumerate() {
            raw_entry(&mut b, format!("l{i}/").as_bytes(), tar::EntryType::Directory, b"");
            raw_entry(&mut b, format!("l{i}/layer.tar").as_bytes(), tar::EntryType::Regular, l);
        }
        raw_entry(&mut b, b"manifest.json", tar::EntryType::Regular, &serde_json::to_vec(&self.manifest()).unwrap());
        for (name, ty, data) in &self.extra {
            raw_entry(&mut b, name, *ty, data);
        }
        b.finish().unwrap();
        f
    }
}

fn refused(f: &tempfile::NamedTempFile, limits: &ArchiveLimits) -> String {
    match inspect_archive_with(f.path(), limits) {
        Err(e @ ImageError::Refused { .. }) => {
            assert!(!e.is_retryable());
            e.to_string()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn refused_default(f: &tempfile::NamedTempFile) -> String {
    refused(f, &ArchiveLimits::default())
}

#[test]
fn a_well_formed_archive_gives_its_id_computed_from_the_config() {
    let plain = layer(&[("etc/hello", b"hi\n"), ("bin/app", &[7u8; 3000])]);
    let zipped = layer(&[("data", &[0u8; 100_000])]);
    let mut image = Image::new(vec![plain, zipped.clone()]);
    image.stored[1] = gzip(&zipped);
    let f = image.write();
    let info = inspect_archive(f.path()).unwrap();
    assert_eq!(info.image_id, image.id());
    assert_eq!(info.tags, ["lilypad/a:1"], "reported, never applied");
    assert_eq!(info.layers, 2);
    assert_eq!(info.entries, 3);
    assert_eq!(info.expanded_bytes, 3 + 3000 + 100_000);
}

#[test]
fn a_hidden_second_manifest_is_refused() {
    // The engine cleans `x/../manifest.json` to `manifest.json` and keeps the last copy: its
    // names would be applied while a check of the first copy saw only harmless ones.
    let mut image = Image::new(vec![layer(&[("a", b"a")])]);
    let evil = json!([{ "Config": format!("{}.json", &image.id()[7..]), "RepoTags": ["lilypad/victim:1"], "Layers": ["l0/layer.tar"] }]);
    image.extra.push((b"x/../manifest.json".to_vec(), tar::EntryType::Regular, serde_json::to_vec(&evil).unwrap()));
    let e = refused_default(&image.write());
    assert!(e.contains("x/../manifest.json") && e.contains("`..`"), "{e}");
}

#[test]
fn absolute_entry_names_are_refused() {
    let mut image = Image::new(vec![layer(&[("a", b"a")])]);
    image.extra.push((b"/manifest.json".to_vec(), tar::EntryType::Regular, b"[]".to_vec()));
    let e = refused_default(&image.write());
    assert!(e.contains("\"/manifest.json\" is an absolute path"), "{e}");
    let mut image = Image::new(vec![layer(&[("a", b"a")])]);
    image.extra.push((b"/etc/cron.d/x".to_vec(), tar::EntryType::Regular, b"* * * * * root id".to_vec()));
    assert!(refused_default(&image.write()).contains("absolute path"));
}

#[test]
fn names_that_clean_to_the_same_path_are_refused() {
    for dup in [&b"./manifest.json"[..], b"manifest.json", b"manifest.json/", b".//manifest.json"] {
        let mut image = Image::new(vec![layer(&[("a", b"a")])]);
        image.extra.push((dup.to_vec(), tar::EntryType::Regular, b"[]".to_vec()));
        let e = refused_default(&image.write());
        assert!(e.contains("names \"manifest.json\" again"), "{}: {e}", String::from_utf8_lossy(dup));
    }
    // Not only the manifest: a layer's path given twice.
    let mut image = Image::new(vec![layer(&[("a", b"a")])]);
    image.extra.push((b"l0//layer.tar".to_vec(), tar::EntryType::Regular, layer(&[("b", b"b")])));
    assert!(refused_default(&image.write()).contains("names \"l0/layer.tar\" again"));
}

#[test]
fn a_sparse_file_in_a_layer_is_refused_before_loading() {
    // 2 GiB declared, one block stored: the whole archive is a few KiB.
    let huge = 2u64 << 30;
    let image = Image::new(vec![sparse_layer(huge)]);
    let f = image.write();
    assert!(std::fs::metadata(f.path()).unwrap().len() < 20_000);
    let start = Instant::now();
    let e = refused_default(&f);
    assert!(e.contains("layer 0 entry \"huge\" is a sparse file"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // Also with room for 2 GiB: sparse files are refused outright.
    let roomy = ArchiveLimits { max_bytes: 64 << 30, ..Default::default() };
    assert!(refused(&f, &roomy).contains("sparse"));
}

#[test]
fn layers_expanding_past_the_caps_are_refused() {
    // A gzip'd layer of 8 MiB of zeros is about 8 KiB: refused by the size its header declares.
    let big = layer(&[("zeros", &vec![0u8; 8 << 20])]);
    let mut image = Image::new(vec![big.clone()]);
    image.stored[0] = gzip(&big);
    let f = image.write();
    assert!(std::fs::metadata(f.path()).unwrap().len() < 64 << 10);
    let small = ArchiveLimits { max_bytes: 1 << 20, ..Default::default() };
    let e = refused(&f, &small);
    assert!(e.contains("over 1048576 bytes") && e.contains("layer 0 entry \"zeros\""), "{e}");
    assert!(inspect_archive(f.path()).is_ok(), "within the default caps");

    // Many entries, across layers: counted together.
    let names: Vec<String> = (0..30).map(|i| format!("f{i}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    let image = Image::new(vec![layer(&files), layer(&files)]);
    let few = ArchiveLimits { max_entries: 50, ..Default::default() };
    assert!(refused(&image.write(), &few).contains("over 50 entries"));
    let few_layers = ArchiveLimits { max_layers: 1, ..Default::default() };
    assert!(refused(&image.write(), &few_layers).contains("2 layers; at most 1"));

    // A gzip stream that goes on past the tar's end counts too.
    let mut padded = layer(&[("a", b"a")]);
    padded.extend(std::iter::repeat_n(0u8, 4 << 20));
    let mut image = Image::new(vec![padded.clone()]);
    image.stored[0] = gzip(&padded);
    let e = refused(&image.write(), &small);
    assert!(e.contains("decompress to over 1048576 bytes"), "{e}");
}

#[test]
fn layers_must_be_the_ones_the_config_names() {
    let mut image = Image::new(vec![layer(&[("a", b"a")])]);
    image.stored[0] = layer(&[("a", b"b")]);
    let e = refused_default(&image.write());
    assert!(e.contains("layer 0 has digest") && e.contains("not the"), "{e}");
    // bzip2 / xz / zstd layers: the engine would take them; this crate walks plain and gzip only.
    let mut image = Image::new(vec![layer(&[("a", b"a")])]);
    image.stored[0] = b"BZh91AY&SY....".to_vec();
    assert!(refused_default(&image.write()).contains("compressed with bzip2"));
}

#[test]
fn malformed_archives_are_refused_with_the_reason() {
    let l = || vec![layer(&[("a", b"a")])];
    let mut two = Image::new(l());
    let one = two.manifest()[0].clone();
    two.manifest = Some(json!([one.clone(), one]));
    assert!(refused_default(&two.write()).contains("holds 2 images"));

    let mut climbing = Image::new(l());
    climbing.manifest = Some(json!([{ "Config": "../../etc/passwd", "Layers": ["l0/layer.tar"] }]));
    assert!(refused_default(&climbing.write()).contains("manifest.json Config: entry \"../../etc/passwd\" has a `..` component"));

    let mut missing = Image::new(l());
    missing.manifest = Some(json!([{ "Config": "nope.json", "Layers": [] }]));
    assert!(refused_default(&missing.write()).contains("\"nope.json\" is not in the archive"));

    let mut hardlink = Image::new(l());
    hardlink.extra.push((b"x".to_vec(), tar::EntryType::Link, vec![]));
    assert!(refused_default(&hardlink.write()).contains("only files, folders and symbolic links"));

    let f = tempfile::NamedTempFile::new().unwrap();
    let mut b = tar::Builder::new(f.reopen().unwrap());
    raw_entry(&mut b, b"other", tar::EntryType::Regular, b"x");
    b.finish().unwrap();
    assert!(refused_default(&f).contains("no manifest.json"));
}
