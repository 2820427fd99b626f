//! Reading a `docker save` archive strictly, before the engine sees any of it.
//!
//! The engine is never handed the archive as published. [`inspect`] reads it once:
//!
//! * every entry name is cleaned as the engine would clean it (`./a//b` is `a/b`) and refused
//!   if it is absolute, climbs with `..`, holds control characters or backslashes, or names
//!   the same path as an earlier entry (the engine keeps the last copy: a harmless
//!   `manifest.json` and a hidden `x/../manifest.json` would otherwise pass a check of the
//!   first while the engine applies the second);
//! * only regular files, folders and symbolic links are allowed (no hard links, devices,
//!   FIFOs or sparse files);
//! * `manifest.json` must name exactly one image; its config is read and hashed (the hash is
//!   the image id) and its layers are walked: each layer (plain or gzip'd tar) is
//!   decompressed and read entry by entry, with the sizes its headers declare summed and the
//!   entries counted against [`ArchiveLimits`], sparse entries refused, and its digest checked
//!   against the config's `rootfs.diff_ids`. A layer bomb is refused here, before loading.
//!
//! [`write_canonical`] then writes a new archive, streamed to the engine, holding only a
//! `manifest.json` of our own (no names: `RepoTags` is null), the config and the layers,
//! copied from the positions [`inspect`] found. Whatever names the published archive holds
//! (in `manifest.json`, `repositories`, `index.json` or hidden entries) never reach the engine.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Largest `manifest.json` read from an archive.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Largest image config read from an archive.
const MAX_CONFIG_BYTES: u64 = 8 << 20;
/// Most entries in the archive itself (a `docker save` archive has a few per layer).
const MAX_OUTER_ENTRIES: u64 = 10_000;

/// Caps on what an image archive may expand to when loaded. The defaults suit a provider with
/// tens of GiB free for images; set [`Self::max_bytes`] from the disk the engine has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Most bytes all layers together may hold: the sizes their tar headers declare, and the
    /// decompressed layer streams themselves.
    pub max_bytes: u64,
    /// Most entries (files, folders, links) in all layers together.
    pub max_entries: u64,
    /// Most layers (overlayfs stacks at most 128).
    pub max_layers: usize,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits { max_bytes: 16 << 30, max_entries: 1_000_000, max_layers: 127 }
    }
}

/// What an archive holds, as [`crate::inspect_archive`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// The image id (`sha256:<hex>`: the digest of its config, computed here).
    pub image_id: String,
    /// The names its `manifest.json` gives the image. Never applied: for messages only.
    pub tags: Vec<String>,
    /// Layers.
    pub layers: usize,
    /// Bytes the layers' files declare, all layers together.
    pub expanded_bytes: u64,
    /// Entries in all layers together.
    pub entries: u64,
}

/// A part of the archive file: where its data starts and how long it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blob {
    pos: u64,
    len: u64,
}

/// An inspected archive: what it holds and where the parts to load lie.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub info: ArchiveInfo,
    config: Blob,
    /// The config's hex digest (the image id without `sha256:`).
    config_hex: String,
    layers: Vec<Blob>,
}

/// Why an archive cannot be inspected.
#[derive(Debug)]
pub(crate) enum Problem {
    /// Not an archive this crate loads (the reason says what is wrong).
    Bad(String),
    /// Reading the file failed.
    Io(io::Error),
}

impl From<io::Error> for Problem {
    fn from(e: io::Error) -> Self {
        Problem::Io(e)
    }
}

fn bad<T>(reason: impl Into<String>) -> Result<T, Problem> {
    Err(Problem::Bad(reason.into()))
}

/// An entry name as the engine would see it: `.` and empty components dropped. Refused:
/// absolute names, `..` anywhere, control characters, backslashes, names that are not UTF-8.
pub(crate) fn clean_name(raw: &[u8]) -> Result<String, String> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let s = std::str::from_utf8(raw).map_err(|_| format!("entry {shown:?} is not UTF-8"))?;
    if s.starts_with('/') {
        return Err(format!("entry {s:?} is an absolute path"));
    }
    if s.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!("entry {s:?} holds a control character or a backslash"));
    }
    let mut parts = Vec::new();
    for p in s.split('/') {
        match p {
            "" | "." => {}
            ".." => return Err(format!("entry {s:?} has a `..` component")),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("entry {s:?} names no file"));
    }
    Ok(parts.join("/"))
}

/// Refuses entries that carry sparse-file records: GNU sparse headers, or PAX `GNU.sparse.*`
/// keys (which Go's tar reader, the engine's, honours and this crate's does not).
fn refuse_sparse<R: Read>(entry: &mut tar::Entry<'_, R>, what: &dyn Fn() -> String) -> Result<(), Problem> {
    if entry.header().entry_type().is_gnu_sparse() {
        return bad(format!("{} is a sparse file: image archives may not hold sparse files", what()));
    }
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            if ext.key_bytes().starts_with(b"GNU.sparse.") {
                return bad(format!("{} is a sparse file (PAX GNU.sparse records): image archives may not hold sparse files", what()));
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Link,
}

/// Reads `len` bytes at `pos` of `file`, refusing more than `max`.
fn read_blob(file: &File, blob: Blob, max: u64, what: &str) -> Result<Vec<u8>, Problem> {
    if blob.len > max {
        return bad(format!("{what} is {} bytes; at most {max} are read", blob.len));
    }
    let mut f = file;
    f.seek(SeekFrom::Start(blob.pos))?;
    let mut buf = Vec::with_capacity(blob.len as usize);
    f.take(blob.len).read_to_end(&mut buf)?;
    if buf.len() as u64 != blob.len {
        return bad(format!("{what} is cut short"));
    }
    Ok(buf)
}

/// Reads the archive at `path` strictly (see the module docs) and walks its layers within
/// `limits`. Blocking.
pub(crate) fn inspect(path: &Path, limits: &ArchiveLimits) -> Result<Plan, Problem> {
    let file = File::open(path)?;
    let mut entries: HashMap<String, (Kind, Blob)> = HashMap::new();
    let mut manifest: Option<Vec<u8>> = None;
    {
        let mut archive = tar::Archive::new(BufReader::new(&file));
        let iter = archive.entries_with_seek().map_err(|e| Problem::Bad(format!("not a tar archive: {e}")))?;
        for (n, entry) in iter.enumerate() {
            if n as u64 >= MAX_OUTER_ENTRIES {
                return bad(format!("it has over {MAX_OUTER_ENTRIES} entries; a `docker save` archive has a few per layer"));
            }
            let mut entry = entry.map_err(|e| Problem::Bad(format!("not a tar archive: {e}")))?;
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            refuse_sparse(&mut entry, &|| format!("entry {shown:?}"))?;
            let ty = entry.header().entry_type();
            let kind = if ty.is_file() {
                Kind::File
            } else if ty.is_dir() {
                Kind::Dir
            } else if ty.is_symlink() {
                Kind::Link
            } else if ty.is_pax_global_extensions() {
                continue;
            } else {
                return bad(format!("entry {shown:?} is a {ty:?}; only files, folders and symbolic links may be in an image archive"));
            };
            let name = clean_name(&raw).map_err(Problem::Bad)?;
            let blob = Blob { pos: entry.raw_file_position(), len: entry.size() };
            if entries.insert(name.clone(), (kind, blob)).is_some() {
                return bad(format!(
                    "entry {shown:?} names {name:?} again: an archive may name each path once (the engine would keep the last copy)"
                ));
            }
            if name == "manifest.json" {
                if kind != Kind::File {
                    return bad("manifest.json is not a file");
                }
                if blob.len > MAX_MANIFEST_BYTES {
                    return bad(format!("manifest.json is over {MAX_MANIFEST_BYTES} bytes"));
                }
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf)?;
                manifest = Some(buf);
            }
        }
    }
    let manifest = manifest.ok_or_else(|| Problem::Bad("no manifest.json: not a `docker save` archive".into()))?;
    let manifest: Vec<ManifestEntry> =
        serde_json::from_slice(&manifest).map_err(|e| Problem::Bad(format!("manifest.json: {e}")))?;
    let [image] = manifest.as_slice() else {
        return bad(format!("it holds {} images; a module's archive holds exactly one", manifest.len()));
    };
    let file_named = |field: &str, path: &str| -> Result<Blob, Problem> {
        let name = clean_name(path.as_bytes()).map_err(|e| Problem::Bad(format!("manifest.json {field}: {e}")))?;
        match entries.get(&name) {
            Some((Kind::File, blob)) => Ok(*blob),
            Some(_) => bad(format!("manifest.json {field} {path:?} is not a regular file in the archive")),
            None => bad(format!("manifest.json {field} {path:?} is not in the archive")),
        }
    };
    let config_blob = file_named("Config", &image.config)?;
    let config = read_blob(&file, config_blob, MAX_CONFIG_BYTES, "the image config")?;
    let config_hex = alloy::hex::encode(Sha256::digest(&config));
    let parsed: ImageConfig =
        serde_json::from_slice(&config).map_err(|e| Problem::Bad(format!("the image config: {e}")))?;
    if parsed.rootfs.ty != "layers" {
        return bad(format!("the image config's rootfs.type is {:?}, not \"layers\"", parsed.rootfs.ty));
    }
    if image.layers.len() != parsed.rootfs.diff_ids.len() {
        return bad(format!(
            "manifest.json lists {} layers but the image config {}",
            image.layers.len(),
            parsed.rootfs.diff_ids.len()
        ));
    }
    if image.layers.len() > limits.max_layers {
        return bad(format!("it has {} layers; at most {} are allowed", image.layers.len(), limits.max_layers));
    }
    let mut walk = Walk { limits, bytes: 0, stream_bytes: 0, entries: 0 };
    let mut layers = Vec::with_capacity(image.layers.len());
    for (i, (path, diff_id)) in image.layers.iter().zip(&parsed.rootfs.diff_ids).enumerate() {
        let blob = file_named(&format!("Layers[{i}]"), path)?;
        walk.layer(&file, blob, i, diff_id)?;
        layers.push(blob);
    }
    let info = ArchiveInfo {
        image_id: format!("sha256:{config_hex}"),
        tags: image.repo_tags.clone().unwrap_or_default(),
        layers: layers.len(),
        expanded_bytes: walk.bytes,
        entries: walk.entries,
    };
    Ok(Plan { info, config: config_blob, config_hex, layers })
}

/// Counts over all layers.
struct Walk<'a> {
    limits: &'a ArchiveLimits,
    /// Bytes the layers' entries declare.
    bytes: u64,
    /// Bytes of the decompressed layer streams.
    stream_bytes: u64,
    entries: u64,
}

/// A reader that hashes what passes and fails once more than `left` bytes have.
struct Metered<'a, R> {
    inner: R,
    hasher: Sha256,
    left: &'a mut u64,
    max: u64,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > *self.left {
            return Err(io::Error::other(StreamTooLong(self.max)));
        }
        *self.left -= n as u64;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[derive(Debug)]
struct StreamTooLong(u64);

impl std::fmt::Display for StreamTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the layers decompress to over {} bytes", self.0)
    }
}

impl std::error::Error for StreamTooLong {}

/// The compression of a layer, by its first bytes, as the engine detects it.
fn compression(head: &[u8]) -> Result<bool, String> {
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(&[0x1f, 0x8b, 0x08]) {
        return Ok(true);
    }
    let other = if starts(&[0x1f, 0x8b]) {
        Some("gzip with an unknown method")
    } else if starts(b"BZh") {
        Some("bzip2")
    } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some("xz")
    } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18]) {
        Some("zstd")
    } else {
        None
    };
    match other {
        Some(c) => Err(format!("is compressed with {c}; image archives carry plain or gzip'd layers (as `docker save` writes them)")),
        None => Ok(false),
    }
}

impl Walk<'_> {
    fn layer(&mut self, file: &File, blob: Blob, i: usize, diff_id: &str) -> Result<(), Problem> {
        let what = |s: &str| format!("layer {i} {s}");
        let mut raw = file.try_clone()?;
        raw.seek(SeekFrom::Start(blob.pos))?;
        let mut raw = BufReader::new(raw.take(blob.len));
        let head = io::BufRead::fill_buf(&mut raw)?;
        let gzip = compression(&head[..head.len().min(8)]).map_err(|e| Problem::Bad(what(&e)))?;
        let max_stream = self.limits.max_bytes;
        let mut left = max_stream.saturating_sub(self.stream_bytes);
        let before = left;
        let stream: Box<dyn Read> = if gzip { Box::new(flate2::read::MultiGzDecoder::new(raw)) } else { Box::new(raw) };
        let metered = Metered { inner: stream, hasher: Sha256::new(), left: &mut left, max: max_stream };
        let too_long = |e: &io::Error| e.get_ref().is_some_and(|e| e.is::<StreamTooLong>());
        let mut archive = tar::Archive::new(metered);
        {
            let iter = archive.entries().map_err(|e| Problem::Bad(what(&format!("is not a tar archive: {e}"))))?;
            for entry in iter {
                let mut entry = match entry {
                    Ok(e) => e,
                    Err(e) if too_long(&e) => return bad(e.to_string()),
                    Err(e) => return bad(what(&format!("is not a tar archive: {e}"))),
                };
                self.entries += 1;
                if self.entries > self.limits.max_entries {
                    return bad(format!("the layers hold over {} entries", self.limits.max_entries));
                }
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                refuse_sparse(&mut entry, &|| what(&format!("entry {name:?}")))?;
                let declared = entry.size().max(entry.header().size().unwrap_or(u64::MAX));
                self.bytes = self.bytes.saturating_add(declared);
                if self.bytes > self.limits.max_bytes {
                    return bad(format!(
                        "the layers' files come to over {} bytes ({} declares {declared}); an image may expand to at most {} bytes",
                        self.limits.max_bytes,
                        what(&format!("entry {name:?}")),
                        self.limits.max_bytes
                    ));
                }
            }
        }
        // The rest of the stream (the tar's end blocks) counts for the digest too.
        let mut metered = archive.into_inner();
        if let Err(e) = io::copy(&mut metered, &mut io::sink()) {
            return if too_long(&e) { bad(e.to_string()) } else { bad(what(&format!("cannot be read: {e}"))) };
        }
        let digest = format!("sha256:{}", alloy::hex::encode(metered.hasher.finalize()));
        self.stream_bytes += before - left;
        if digest != diff_id {
            return bad(what(&format!("has digest {digest}, not the {diff_id} the image config names")));
        }
        Ok(())
    }
}

fn append(b: &mut tar::Builder<impl Write>, name: &str, len: u64, data: impl Read) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(len);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data)
}

/// Writes the archive the engine loads: our own `manifest.json` (no names), the config and
/// the layers of `plan`, copied from `file`. Blocking.
pub(crate) fn write_canonical(file: &File, plan: &Plan, out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    let config_name = format!("{}.json", plan.config_hex);
    let layer_names: Vec<String> = (0..plan.layers.len()).map(|i| format!("{i}/layer.tar")).collect();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": null,
        "Layers": layer_names,
    }]))
    .map_err(io::Error::other)?;
    append(&mut b, "manifest.json", manifest.len() as u64, &manifest[..])?;
    let mut copy = |name: &str, blob: Blob| -> io::Result<()> {
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(blob.pos))?;
        let mut data = f.take(blob.len);
        append(&mut b, name, blob.len, &mut data)?;
        if data.limit() != 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{name} was cut short while loading")));
        }
        Ok(())
    };
    copy(&config_name, plan.config)?;
    for (name, blob) in layer_names.iter().zip(&plan.layers) {
        copy(name, *blob)?;
    }
    b.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_and_escapes_refused() {
        assert_eq!(clean_name(b"./a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(clean_name(b"manifest.json").unwrap(), "manifest.json");
        for bad in [&b"/manifest.json"[..], b"x/../manifest.json", b"..", b"a/..", b"./", b"", b"a\\b", b"a\nb", b"\xff"] {
            assert!(clean_name(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn compression_is_detected_like_the_engine_does() {
        assert_eq!(compression(&[0x1f, 0x8b, 0x08, 0]), Ok(true));
        assert_eq!(compression(b"etc/\0\0\0\0"), Ok(false));
        for (head, name) in [(&b"BZh91AY"[..], "bzip2"), (&[0xfd, b'7', b'z', b'X', b'Z', 0][..], "xz"), (&[0x28, 0xb5, 0x2f, 0xfd][..], "zstd"), (&[0x50, 0x2a, 0x4d, 0x18][..], "zstd")] {
            assert!(compression(head).unwrap_err().contains(name), "{name}");
        }
    }
}
