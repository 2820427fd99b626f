//! Hand-written protobuf encoding of the two messages UnixFS needs: the dag-pb `PBNode`/`PBLink`
//! envelope and the UnixFS `Data` message inside it.
//!
//! ```text
//! message PBLink { optional bytes Hash = 1; optional string Name = 2; optional uint64 Tsize = 3; }
//! message PBNode { repeated PBLink Links = 2; optional bytes Data = 1; }
//! message Data   { required DataType Type = 1; optional bytes Data = 2; optional uint64 filesize = 3;
//!                  repeated uint64 blocksizes = 4; optional uint64 hashType = 5;
//!                  optional uint64 fanout = 6; optional uint32 mode = 7; optional UnixTime mtime = 8; }
//! ```
//!
//! The dag-pb spec fixes the serialized order: every `Links` entry (field 2) first, then `Data`
//! (field 1); inside a link Hash, Name, Tsize. Kubo always writes `Name` (empty for file chunks)
//! and `Tsize`.

use cid::Cid;

/// UnixFS `Data.Type` values.
pub(crate) const UNIXFS_RAW: u64 = 0;
pub(crate) const UNIXFS_DIRECTORY: u64 = 1;
pub(crate) const UNIXFS_FILE: u64 = 2;
pub(crate) const UNIXFS_METADATA: u64 = 3;
pub(crate) const UNIXFS_SYMLINK: u64 = 4;
pub(crate) const UNIXFS_HAMT_SHARD: u64 = 5;

const WIRE_VARINT: u64 = 0;
const WIRE_I64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_I32: u64 = 5;

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Number of bytes `put_varint` writes for `v`.
#[cfg(test)]
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a varint at `*pos`, advancing it. `None` when truncated or longer than 10 bytes.
pub(crate) fn read_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = *data.get(*pos)?;
        *pos += 1;
        if i == 9 && b > 1 {
            return None; // overflows u64
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_key(buf: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(buf, (field << 3) | wire);
}

fn put_bytes(buf: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(buf, field, WIRE_LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn put_uint(buf: &mut Vec<u8>, field: u64, v: u64) {
    put_key(buf, field, WIRE_VARINT);
    put_varint(buf, v);
}

/// A dag-pb link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PbLink {
    pub cid: Cid,
    pub name: Option<String>,
    pub tsize: Option<u64>,
}

/// A decoded dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PbNode {
    pub links: Vec<PbLink>,
    pub data: Option<Vec<u8>>,
}

/// Encodes a dag-pb node the way Kubo does: links (each with Hash, Name, Tsize) then Data.
/// Links must already be in the order wanted (sorted by name for directories).
pub(crate) fn encode_node<'a>(
    links: impl IntoIterator<Item = (&'a Cid, &'a str, u64)>,
    data: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + data.len());
    let mut link_buf = Vec::with_capacity(128);
    let mut cid_buf = Vec::with_capacity(40);
    for (cid, name, tsize) in links {
        link_buf.clear();
        cid_buf.clear();
        // Writing into a Vec cannot fail.
        let _ = cid.write_bytes(&mut cid_buf);
        put_bytes(&mut link_buf, 1, &cid_buf);
        put_bytes(&mut link_buf, 2, name.as_bytes());
        put_uint(&mut link_buf, 3, tsize);
        put_bytes(&mut out, 2, &link_buf);
    }
    put_bytes(&mut out, 1, data);
    out
}

/// Skips a field of the given wire type at `*pos`.
fn skip_field(data: &[u8], pos: &mut usize, wire: u64) -> Result<(), String> {
    match wire {
        WIRE_VARINT => read_varint(data, pos)
            .map(|_| ())
            .ok_or_else(|| "truncated varint".to_string()),
        WIRE_I64 => advance(data, pos, 8),
        WIRE_LEN => {
            let len = read_varint(data, pos).ok_or("truncated length")?;
            let len = usize::try_from(len).map_err(|_| "length overflow")?;
            advance(data, pos, len)
        }
        WIRE_I32 => advance(data, pos, 4),
        other => Err(format!("unsupported wire type {other}")),
    }
}

fn advance(data: &[u8], pos: &mut usize, n: usize) -> Result<(), String> {
    let end = pos.checked_add(n).ok_or("length overflow")?;
    if end > data.len() {
        return Err("truncated field".into());
    }
    *pos = end;
    Ok(())
}

fn read_len_delimited<'a>(data: &'a [u8], pos: &mut usize) -> Result<&'a [u8], String> {
    let len = read_varint(data, pos).ok_or("truncated length")?;
    let len = usize::try_from(len).map_err(|_| "length overflow")?;
    let start = *pos;
    advance(data, pos, len)?;
    Ok(&data[start..*pos])
}

fn read_key(data: &[u8], pos: &mut usize) -> Result<(u64, u64), String> {
    let key = read_varint(data, pos).ok_or("truncated field key")?;
    Ok((key >> 3, key & 7))
}

/// Decodes a dag-pb node. Strict as the dag-pb spec asks: only fields 1 and 2 with the right
/// wire types, at most one Data, links with a Hash.
pub(crate) fn decode_node(bytes: &[u8]) -> Result<PbNode, String> {
    let mut node = PbNode::default();
    let mut pos = 0;
    while pos < bytes.len() {
        match read_key(bytes, &mut pos)? {
            (1, WIRE_LEN) => {
                if node.data.is_some() {
                    return Err("duplicate Data field".into());
                }
                node.data = Some(read_len_delimited(bytes, &mut pos)?.to_vec());
            }
            (2, WIRE_LEN) => {
                if node.data.is_some() {
                    return Err("Links after Data".into());
                }
                let link = read_len_delimited(bytes, &mut pos)?;
                node.links.push(decode_link(link)?);
            }
            (field, wire) => {
                return Err(format!("unexpected field {field} (wire type {wire})"));
            }
        }
    }
    Ok(node)
}

fn decode_link(bytes: &[u8]) -> Result<PbLink, String> {
    let mut cid = None;
    let mut name = None;
    let mut tsize = None;
    let mut pos = 0;
    while pos < bytes.len() {
        match read_key(bytes, &mut pos)? {
            (1, WIRE_LEN) if cid.is_none() => {
                let raw = read_len_delimited(bytes, &mut pos)?;
                let parsed =
                    Cid::try_from(raw).map_err(|e| format!("link with invalid CID: {e}"))?;
                cid = Some(parsed);
            }
            (2, WIRE_LEN) if name.is_none() => {
                let raw = read_len_delimited(bytes, &mut pos)?;
                let s = std::str::from_utf8(raw).map_err(|_| "link name is not UTF-8")?;
                name = Some(s.to_owned());
            }
            (3, WIRE_VARINT) if tsize.is_none() => {
                tsize = Some(read_varint(bytes, &mut pos).ok_or("truncated Tsize")?);
            }
            (field, wire) => {
                return Err(format!(
                    "unexpected or repeated link field {field} (wire type {wire})"
                ));
            }
        }
    }
    let cid = cid.ok_or("link without Hash")?;
    Ok(PbLink { cid, name, tsize })
}

/// Encodes UnixFS `Data` for a file node: Type=File, filesize, one blocksize per child.
pub(crate) fn encode_unixfs_file(filesize: u64, blocksizes: impl Iterator<Item = u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 4 * super::MAX_LINKS);
    put_uint(&mut out, 1, UNIXFS_FILE);
    put_uint(&mut out, 3, filesize);
    for b in blocksizes {
        put_uint(&mut out, 4, b);
    }
    out
}

/// UnixFS `Data` for a plain directory: just Type=Directory.
pub(crate) const UNIXFS_DIRECTORY_DATA: [u8; 2] = [0x08, UNIXFS_DIRECTORY as u8];

/// The UnixFS fields this crate uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct UnixFs {
    pub kind: u64,
    pub data: Option<Vec<u8>>,
    pub filesize: Option<u64>,
    pub blocksizes: Vec<u64>,
    /// HAMT shards: the hash function's multicodec.
    pub hash_type: Option<u64>,
    /// HAMT shards: slots per node.
    pub fanout: Option<u64>,
}

/// Encodes UnixFS `Data` for a HAMT shard node: Type=HAMTShard, Data=bitfield, hashType,
/// fanout (field order as Kubo and the JS importer write them; no filesize, no blocksizes).
pub(crate) fn encode_unixfs_hamt(bitfield: &[u8], hash_type: u64, fanout: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + bitfield.len());
    put_uint(&mut out, 1, UNIXFS_HAMT_SHARD);
    if !bitfield.is_empty() {
        put_bytes(&mut out, 2, bitfield);
    }
    put_uint(&mut out, 5, hash_type);
    put_uint(&mut out, 6, fanout);
    out
}

/// Decodes UnixFS `Data`, skipping the fields this crate does not use (mode, mtime, unknown
/// ones). `blocksizes` may be packed or not.
pub(crate) fn decode_unixfs(bytes: &[u8]) -> Result<UnixFs, String> {
    let mut kind = None;
    let mut out = UnixFs::default();
    let mut pos = 0;
    while pos < bytes.len() {
        match read_key(bytes, &mut pos)? {
            (1, WIRE_VARINT) => kind = Some(read_varint(bytes, &mut pos).ok_or("truncated Type")?),
            (2, WIRE_LEN) => out.data = Some(read_len_delimited(bytes, &mut pos)?.to_vec()),
            (3, WIRE_VARINT) => {
                out.filesize = Some(read_varint(bytes, &mut pos).ok_or("truncated filesize")?)
            }
            (4, WIRE_VARINT) => out
                .blocksizes
                .push(read_varint(bytes, &mut pos).ok_or("truncated blocksize")?),
            (4, WIRE_LEN) => {
                let packed = read_len_delimited(bytes, &mut pos)?;
                let mut p = 0;
                while p < packed.len() {
                    out.blocksizes
                        .push(read_varint(packed, &mut p).ok_or("truncated packed blocksizes")?);
                }
            }
            (5, WIRE_VARINT) => {
                out.hash_type = Some(read_varint(bytes, &mut pos).ok_or("truncated hashType")?)
            }
            (6, WIRE_VARINT) => {
                out.fanout = Some(read_varint(bytes, &mut pos).ok_or("truncated fanout")?)
            }
            (_, wire) => skip_field(bytes, &mut pos, wire)?,
        }
    }
    out.kind = kind.ok_or("UnixFS Data without Type")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{dag_pb_cid, raw_cid};

    #[test]
    fn varints() {
        for (v, bytes) in [
            (0u64, vec![0x00]),
            (1, vec![0x01]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (262144, vec![0x80, 0x80, 0x10]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf, bytes, "encoding {v}");
            assert_eq!(varint_len(v), bytes.len(), "length of {v}");
            let mut pos = 0;
            assert_eq!(read_varint(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
        }
        // Truncated and overlong varints are refused.
        assert_eq!(read_varint(&[0x80], &mut 0), None);
        assert_eq!(read_varint(&[0xff; 10], &mut 0), None);
        assert_eq!(
            read_varint(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                &mut 0
            ),
            None
        );
    }

    #[test]
    fn unixfs_file_data_bytes() {
        // Type=File(2), filesize=262145, blocksizes=[262144, 1], non-packed like Kubo writes them.
        let data = encode_unixfs_file(262145, [262144u64, 1].into_iter());
        assert_eq!(
            data,
            vec![0x08, 0x02, 0x18, 0x81, 0x80, 0x10, 0x20, 0x80, 0x80, 0x10, 0x20, 0x01]
        );
        let back = decode_unixfs(&data).unwrap();
        assert_eq!(back.kind, UNIXFS_FILE);
        assert_eq!(back.filesize, Some(262145));
        assert_eq!(back.blocksizes, vec![262144, 1]);
        assert_eq!(back.data, None);
    }

    #[test]
    fn unixfs_packed_blocksizes_and_unknown_fields() {
        // Type=File, packed blocksizes [3, 300], mode=0o644 (field 7), an unknown field 20.
        let bytes = [
            0x08, 0x02, 0x22, 0x03, 0x03, 0xac, 0x02, 0x38, 0xa4, 0x03, 0xa2, 0x01, 0x01, 0xff,
        ];
        let u = decode_unixfs(&bytes).unwrap();
        assert_eq!(u.blocksizes, vec![3, 300]);
        assert!(decode_unixfs(&[0x18, 0x01]).is_err(), "Type is required");
        assert!(decode_unixfs(&[0x08]).is_err(), "truncated");
    }

    #[test]
    fn empty_directory_node_bytes_and_cid() {
        // The empty UnixFS directory: PBNode{Data: [08 01]} = 0a 02 08 01.
        let bytes = encode_node(std::iter::empty(), &UNIXFS_DIRECTORY_DATA);
        assert_eq!(bytes, vec![0x0a, 0x02, 0x08, 0x01]);
        assert_eq!(
            dag_pb_cid(&bytes).to_string(),
            "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
        );
    }

    #[test]
    fn links_come_before_data() {
        let leaf = raw_cid(b"hello\n");
        let bytes = encode_node([(&leaf, "a.txt", 6u64)], &UNIXFS_DIRECTORY_DATA);
        let cid_bytes = leaf.to_bytes();
        let mut expected = vec![0x12]; // field 2 (Links), length-delimited
        let mut link = vec![0x0a, cid_bytes.len() as u8];
        link.extend_from_slice(&cid_bytes);
        link.extend_from_slice(&[0x12, 0x05]);
        link.extend_from_slice(b"a.txt");
        link.extend_from_slice(&[0x18, 0x06]);
        expected.push(link.len() as u8);
        expected.extend_from_slice(&link);
        expected.extend_from_slice(&[0x0a, 0x02, 0x08, 0x01]); // then field 1 (Data)
        assert_eq!(bytes, expected);

        let node = decode_node(&bytes).unwrap();
        assert_eq!(
            node.links,
            vec![PbLink {
                cid: leaf,
                name: Some("a.txt".into()),
                tsize: Some(6)
            }]
        );
        assert_eq!(node.data.as_deref(), Some(&UNIXFS_DIRECTORY_DATA[..]));
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode_node(&[0x0a]).is_err(), "truncated Data");
        assert!(
            decode_node(&[0x0a, 0x05, 0x00]).is_err(),
            "Data longer than the block"
        );
        assert!(decode_node(&[0x18, 0x01]).is_err(), "unknown field");
        assert!(
            decode_node(&[0x0a, 0x00, 0x0a, 0x00]).is_err(),
            "two Data fields"
        );
        assert!(
            decode_node(&[0x0a, 0x00, 0x12, 0x00]).is_err(),
            "Links after Data"
        );
        assert!(decode_node(&[0x12, 0x00]).is_err(), "link without Hash");
        assert!(
            decode_node(&[0x12, 0x03, 0x0a, 0x01, 0x01]).is_err(),
            "bad link CID"
        );
        assert_eq!(decode_node(&[]).unwrap(), PbNode::default());
    }
}
