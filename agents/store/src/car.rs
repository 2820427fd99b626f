//! CARv1 (content-addressed archive) export and verified import.
//!
//! A CARv1 is a varint-length-prefixed dag-cbor header `{"roots": [CID...], "version": 1}`
//! followed by sections, each `varint(len(CID bytes) + len(block)) || CID bytes || block`.

use std::io::{Read, Write};
use std::path::PathBuf;

use cid::Cid;
use tracing::debug;

use crate::blockstore::{BlockSource, DiskBlockstore};
use crate::dag::walk_blocks;
use crate::error::{Result, StoreError};
use crate::pb::put_varint;
use crate::reachable::Reachable;

/// Largest block accepted from a CAR (Kubo's blocks are at most 1 MiB; bitswap allows 2 MiB).
pub const MAX_BLOCK_SIZE: usize = 4 << 20;
/// Largest CAR header accepted.
const MAX_HEADER_SIZE: usize = 64 << 10;

/// Writes the CAR of the DAG under `root` (one root; every distinct block once, depth-first in
/// link order, like `ipfs dag export`) to `out`. Returns the number of blocks written.
///
/// Blocks are read from `store` as they are; a missing block is [`StoreError::NotFound`].
/// Blocking: call from `spawn_blocking` in async code.
pub fn export_car<W: Write>(store: &DiskBlockstore, root: &Cid, out: W) -> Result<u64> {
    export_from(store, root, out)
}

pub(crate) fn export_from<W: Write>(src: &impl BlockSource, root: &Cid, mut out: W) -> Result<u64> {
    let write_err = |e| StoreError::io(PathBuf::from("<CAR output>"), e);
    out.write_all(&encode_header(std::slice::from_ref(root)))
        .map_err(write_err)?;
    let mut count = 0u64;
    let mut prefix = Vec::with_capacity(64);
    walk_blocks(src, root, &mut |cid, block| {
        prefix.clear();
        let cid_bytes = cid.to_bytes();
        put_varint(&mut prefix, (cid_bytes.len() + block.len()) as u64);
        prefix.extend_from_slice(&cid_bytes);
        out.write_all(&prefix).map_err(write_err)?;
        out.write_all(block).map_err(write_err)?;
        count += 1;
        Ok(())
    })?;
    out.flush().map_err(write_err)?;
    Ok(count)
}

/// Reads a CARv1 from `input` and stores in `store` the blocks reachable from the roots named
/// in its header, each verified against its CID. Returns the roots.
///
/// Blocks outside the roots' DAGs are not kept (a CAR may carry anything; blocks that arrive
/// before their parent wait in a bounded buffer). A wanted block that does not match its CID
/// is a fatal [`StoreError::Verification`] naming the CID (blocks before it stay in the store:
/// they are valid). A malformed or truncated CAR is [`StoreError::Car`]. The CAR need not hold
/// a complete DAG. Blocking.
pub fn import_car<R: Read>(mut input: R, store: &DiskBlockstore) -> Result<Vec<Cid>> {
    let mut decoder = CarDecoder::default();
    let mut buf = vec![0u8; 256 << 10];
    let mut keep: Option<Reachable> = None;
    loop {
        let n = match input.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::io(PathBuf::from("<CAR input>"), e)),
        };
        if n == 0 {
            break;
        }
        decoder.push(&buf[..n]);
        while let Some((cid, block)) = decoder.next_block()? {
            let keep = keep.get_or_insert_with(|| Reachable::new(decoder.roots()));
            keep.offer(&cid, block, store)?;
        }
    }
    let roots = decoder.finish()?;
    let (kept, dropped) = keep.map_or((0, 0), Reachable::finish);
    debug!(kept, dropped, roots = roots.len(), "imported CAR");
    Ok(roots)
}

/// CBOR major types used by the header.
const MAJOR_UINT: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
/// CBOR tag for CIDs in dag-cbor.
const TAG_CID: u64 = 42;

fn cbor_head(out: &mut Vec<u8>, major: u8, v: u64) {
    let m = major << 5;
    match v {
        0..=23 => out.push(m | v as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, v as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// The header, length prefix included.
pub(crate) fn encode_header(roots: &[Cid]) -> Vec<u8> {
    let mut cbor = Vec::with_capacity(32 + 40 * roots.len());
    cbor_head(&mut cbor, MAJOR_MAP, 2);
    // dag-cbor orders keys by length first: "roots" before "version".
    cbor_head(&mut cbor, MAJOR_TEXT, 5);
    cbor.extend_from_slice(b"roots");
    cbor_head(&mut cbor, MAJOR_ARRAY, roots.len() as u64);
    for root in roots {
        let bytes = root.to_bytes();
        cbor_head(&mut cbor, MAJOR_TAG, TAG_CID);
        cbor_head(&mut cbor, MAJOR_BYTES, bytes.len() as u64 + 1);
        cbor.push(0x00); // multibase identity prefix, as dag-cbor writes CIDs
        cbor.extend_from_slice(&bytes);
    }
    cbor_head(&mut cbor, MAJOR_TEXT, 7);
    cbor.extend_from_slice(b"version");
    cbor_head(&mut cbor, MAJOR_UINT, 1);
    let mut out = Vec::with_capacity(cbor.len() + 2);
    put_varint(&mut out, cbor.len() as u64);
    out.extend_from_slice(&cbor);
    out
}

/// Minimal CBOR reader for the CAR header.
struct Cbor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cbor<'a> {
    fn head(&mut self) -> Result<(u8, u64)> {
        let first = self.take(1)?[0];
        let major = first >> 5;
        let info = first & 0x1f;
        let v = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes([self.take(1)?[0], self.take(1)?[0]])),
            26 => {
                let b = self.take(4)?;
                u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            27 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                u64::from_be_bytes(a)
            }
            _ => {
                return Err(StoreError::car(
                    "indefinite-length or reserved CBOR item in header",
                ))
            }
        };
        Ok((major, v))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| StoreError::car("truncated header"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn len(&mut self, v: u64) -> Result<usize> {
        usize::try_from(v)
            .ok()
            .filter(|n| *n <= self.data.len())
            .ok_or_else(|| StoreError::car("header item longer than the header"))
    }

    fn text(&mut self) -> Result<&'a str> {
        match self.head()? {
            (MAJOR_TEXT, n) => {
                let n = self.len(n)?;
                std::str::from_utf8(self.take(n)?)
                    .map_err(|_| StoreError::car("header key is not UTF-8"))
            }
            _ => Err(StoreError::car("header map key is not a string")),
        }
    }

    fn cid(&mut self) -> Result<Cid> {
        if self.head()? != (MAJOR_TAG, TAG_CID) {
            return Err(StoreError::car("root is not a CID (tag 42)"));
        }
        let bytes = match self.head()? {
            (MAJOR_BYTES, n) => {
                let n = self.len(n)?;
                self.take(n)?
            }
            _ => return Err(StoreError::car("root CID is not a byte string")),
        };
        match bytes.split_first() {
            Some((0, rest)) => Cid::try_from(rest).map_err(|e| StoreError::InvalidCid {
                input: crate::hash::hex(rest),
                reason: e.to_string(),
            }),
            _ => Err(StoreError::car("root CID lacks the 0x00 multibase prefix")),
        }
    }
}

fn decode_header(cbor: &[u8]) -> Result<Vec<Cid>> {
    let mut r = Cbor { data: cbor, pos: 0 };
    let (major, n) = r.head()?;
    if major != MAJOR_MAP {
        return Err(StoreError::car("header is not a CBOR map"));
    }
    let mut roots = None;
    let mut version = None;
    for _ in 0..n {
        match r.text()? {
            "roots" => {
                let (major, count) = r.head()?;
                if major != MAJOR_ARRAY {
                    return Err(StoreError::car("header roots is not an array"));
                }
                let count = r.len(count)?;
                let mut list = Vec::with_capacity(count);
                for _ in 0..count {
                    list.push(r.cid()?);
                }
                roots = Some(list);
            }
            "version" => match r.head()? {
                (MAJOR_UINT, v) => version = Some(v),
                _ => return Err(StoreError::car("header version is not an integer")),
            },
            other => {
                return Err(StoreError::car(format!("unexpected header key {other:?}")));
            }
        }
    }
    if r.pos != cbor.len() {
        return Err(StoreError::car("trailing bytes after the header"));
    }
    match version {
        Some(1) => {}
        Some(2) => {
            return Err(StoreError::car(
                "CARv2 is not supported; ask for a CARv1 (application/vnd.ipld.car; version=1)",
            ))
        }
        Some(v) => return Err(StoreError::car(format!("unsupported CAR version {v}"))),
        None => return Err(StoreError::car("header without version")),
    }
    roots.ok_or_else(|| StoreError::car("header without roots"))
}

/// Reads a varint at the start of `data`: `Ok(None)` when more bytes are needed.
fn try_varint(data: &[u8]) -> Result<Option<(u64, usize)>> {
    let mut pos = 0;
    match crate::pb::read_varint(data, &mut pos) {
        Some(v) => Ok(Some((v, pos))),
        None if data.len() < 10 && data.iter().all(|b| b & 0x80 != 0) => Ok(None),
        None => Err(StoreError::car("invalid varint")),
    }
}

/// Incremental CARv1 decoder: feed bytes as they arrive with [`push`](Self::push), take blocks
/// with [`next_block`](Self::next_block), end with [`finish`](Self::finish). Blocks are returned
/// unverified.
#[derive(Default)]
pub(crate) struct CarDecoder {
    buf: Vec<u8>,
    pos: usize,
    roots: Option<Vec<Cid>>,
}

impl CarDecoder {
    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Next complete (CID, block) section, `Ok(None)` when more bytes are needed.
    pub(crate) fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>> {
        let avail = &self.buf[self.pos..];
        let Some((len, vlen)) = try_varint(avail)? else {
            return Ok(None);
        };
        let limit = if self.roots.is_none() {
            MAX_HEADER_SIZE
        } else {
            MAX_BLOCK_SIZE + 128
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|n| *n <= limit)
            .ok_or_else(|| StoreError::car(format!("section of {len} bytes exceeds {limit}")))?;
        if avail.len() < vlen + len {
            return Ok(None);
        }
        let section = &avail[vlen..vlen + len];
        self.pos += vlen + len;
        if self.roots.is_none() {
            self.roots = Some(decode_header(section)?);
            return self.next_block();
        }
        if len == 0 {
            return Err(StoreError::car("empty section"));
        }
        let mut cursor = std::io::Cursor::new(section);
        let cid = Cid::read_bytes(&mut cursor).map_err(|e| StoreError::InvalidCid {
            input: crate::hash::hex(&section[..section.len().min(64)]),
            reason: format!("in CAR section: {e}"),
        })?;
        let start = cursor.position() as usize;
        if section.len() - start > MAX_BLOCK_SIZE {
            return Err(StoreError::car(format!(
                "block {cid} exceeds {MAX_BLOCK_SIZE} bytes"
            )));
        }
        Ok(Some((cid, section[start..].to_vec())))
    }

    /// The header's roots (empty until the header has been read).
    pub(crate) fn roots(&self) -> &[Cid] {
        self.roots.as_deref().unwrap_or(&[])
    }

    /// Checks that the stream ended on a section boundary after a header; returns the roots.
    pub(crate) fn finish(self) -> Result<Vec<Cid>> {
        if self.pos != self.buf.len() {
            return Err(StoreError::car(format!(
                "truncated: {} bytes of an incomplete section at the end",
                self.buf.len() - self.pos
            )));
        }
        self.roots
            .ok_or_else(|| StoreError::car("empty stream, no header"))
    }
}

/// Length of the header of a CAR with `roots` (tests).
#[cfg(test)]
fn header_len(roots: &[Cid]) -> usize {
    let h = encode_header(roots);
    let mut pos = 0;
    let n = crate::pb::read_varint(&h, &mut pos).unwrap() as usize;
    assert_eq!(crate::pb::varint_len(n as u64), pos);
    pos + n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{dag_pb_cid, raw_cid};
    use crate::importer::{add_path, CHUNK_SIZE};
    use std::fs;

    #[test]
    fn header_bytes() {
        let root = dag_pb_cid(&[0x0a, 0x02, 0x08, 0x01]);
        let h = encode_header(&[root]);
        // Same bytes go-car writes: a2 65 "roots" 81 d8 2a 58 25 00 <36-byte CID> 67 "version" 01
        let mut cbor = vec![0xa2, 0x65];
        cbor.extend_from_slice(b"roots");
        cbor.extend_from_slice(&[0x81, 0xd8, 0x2a, 0x58, 0x25, 0x00]);
        cbor.extend_from_slice(&root.to_bytes());
        cbor.push(0x67);
        cbor.extend_from_slice(b"version");
        cbor.push(0x01);
        let mut expected = vec![cbor.len() as u8];
        expected.extend_from_slice(&cbor);
        assert_eq!(h, expected);
        assert_eq!(h.len(), header_len(&[root]));
        assert_eq!(decode_header(&cbor).unwrap(), vec![root]);
    }

    #[test]
    fn header_rejects() {
        let v2 = [0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02];
        assert!(decode_header(&v2)
            .unwrap_err()
            .to_string()
            .contains("CARv2"));
        assert!(decode_header(&[0x80]).is_err());
        assert!(decode_header(&[0xa1]).is_err());
    }

    fn sample_tree() -> (tempfile::TempDir, DiskBlockstore, Cid) {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        fs::create_dir_all(top.join("a/b")).unwrap();
        fs::create_dir_all(top.join("empty")).unwrap();
        fs::write(top.join("a/b/f"), vec![7u8; 2 * CHUNK_SIZE + 3]).unwrap();
        fs::write(top.join("g"), b"hello\n").unwrap();
        fs::write(top.join("same"), b"hello\n").unwrap();
        let store = DiskBlockstore::open(dir.path().join("s1")).unwrap();
        let root = add_path(&top, &store).unwrap();
        (dir, store, root)
    }

    #[test]
    fn round_trip() {
        let (dir, store, root) = sample_tree();
        let mut car = Vec::new();
        let n = export_car(&store, &root, &mut car).unwrap();
        // root, a, a/b, f node, 2 distinct leaves (7s full, 7s 3 bytes), empty, hello
        assert_eq!(n, 8);

        let other = DiskBlockstore::open(dir.path().join("s2")).unwrap();
        // Feed it in awkward pieces through a reader that returns 7 bytes at a time.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(7).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let roots = import_car(Trickle(&car), &other).unwrap();
        assert_eq!(roots, vec![root]);
        let mut again = Vec::new();
        export_car(&other, &root, &mut again).unwrap();
        assert_eq!(again, car);
    }

    #[test]
    fn corrupted_block_fails_verification() {
        let (dir, store, root) = sample_tree();
        let mut car = Vec::new();
        export_car(&store, &root, &mut car).unwrap();
        // Flip the last byte: inside the last block.
        let last = car.len() - 1;
        car[last] ^= 0xff;
        let other = DiskBlockstore::open(dir.path().join("s2")).unwrap();
        let err = import_car(&car[..], &other).unwrap_err();
        assert!(matches!(err, StoreError::Verification { .. }), "{err}");
        assert!(!err.is_retryable());
    }

    #[test]
    fn truncated_and_garbage() {
        let (_dir, store, root) = sample_tree();
        let mut car = Vec::new();
        export_car(&store, &root, &mut car).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let other = DiskBlockstore::open(dir.path()).unwrap();
        let err = import_car(&car[..car.len() - 10], &other).unwrap_err();
        assert!(matches!(err, StoreError::Car { .. }), "{err}");
        assert!(matches!(
            import_car(&[][..], &other),
            Err(StoreError::Car { .. })
        ));
        // A section length far over the limit is refused before allocating.
        let mut huge = encode_header(&[root]);
        put_varint(&mut huge, 1 << 40);
        assert!(matches!(
            import_car(&huge[..], &other),
            Err(StoreError::Car { .. })
        ));
        // Header only: fine, no blocks.
        assert_eq!(
            import_car(&encode_header(&[root])[..], &other).unwrap(),
            vec![root]
        );
    }

    #[test]
    fn export_missing_block_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskBlockstore::open(dir.path()).unwrap();
        let cid = raw_cid(b"absent");
        assert!(matches!(
            export_car(&store, &cid, Vec::new()),
            Err(StoreError::NotFound { .. })
        ));
    }
}
