//! HAMT-sharded UnixFS folders, built and read as Kubo (boxo `ipld/unixfs/hamt`) and the
//! JavaScript importer (`ipfs-unixfs-importer`'s `dir-sharded.ts` over `hamt-sharding`) do.
//!
//! * A folder is sharded when the estimate of its node's size, the sum over its entries of the
//!   name's length plus the entry CID's length in bytes, is *greater* than [`HAMT_THRESHOLD`]
//!   (256 KiB): Kubo's `HAMTShardingSize` with its default `SizeEstimationLinks`, boxo's
//!   `ipld/unixfs/io/directory.go` ("directory converts to HAMT when estimatedSize >
//!   HAMTShardingSize"), and the JS importer's `shardSplitThresholdBytes` / `'links-bytes'`.
//! * Fanout 256 (8 bits of the hash per level); the hash is murmur3 x64 128 with seed 0, of which
//!   only the first 64 bits are used (multicodec `murmur3-x64-64`, 0x22), read most significant
//!   bit first: level `k` uses byte `k` of that big-endian 64-bit value. Past 8 levels the hash
//!   is extended as `hamt-sharding`'s `InfiniteHash` does: round `r` hashes `name || [r]`.
//! * A slot holding one entry is a link named `XX<name>` (`XX`: the slot index, two uppercase
//!   hex digits) to the entry, with the entry's cumulative size as Tsize; a slot holding more is
//!   a link named `XX` to a child shard built the same way one level down.
//! * Every shard node carries UnixFS `Data{Type=HAMTShard, Data=bitfield, hashType=0x22,
//!   fanout=256}`, the bitfield being the set slots as a big-endian integer without leading zero
//!   bytes (bit `i` = slot `i`), and its links in slot order.
//!
//! Reading checks what a crafted shard could abuse: fanout a power of two between 8 and 1024,
//! hash type 0x22, link names with a valid slot prefix, child shards that are shards, a depth
//! bound, and (for lookups) that a name sits in the slot its hash gives.

use cid::Cid;

use crate::blockstore::{BlockSink, BlockSource};
use crate::error::{Result, StoreError};
use crate::hash::dag_pb_cid;
use crate::pb::{self, PbLink};

/// Kubo's default `HAMTShardingSize` (and the JS importer's `shardSplitThresholdBytes`): a
/// folder whose link estimate exceeds this many bytes is sharded.
pub const HAMT_THRESHOLD: usize = 262_144;

/// Slots per shard node (Kubo's and the JS importer's default `HAMTShardWidth`).
pub const HAMT_FANOUT: usize = 256;

/// Multicodec of the hash function: murmur3-x64-64.
pub(crate) const HASH_MURMUR3_X64_64: u64 = 0x22;

/// Deepest shard nesting accepted when reading (a 256-fanout HAMT of 2^64 entries is 8 deep).
const MAX_SHARD_DEPTH: usize = 16;

/// MurmurHash3 x64 128-bit with seed 0; returns the first 64-bit half (`h1`), the value Go's
/// `murmur3.Sum64` gives and the JS importer takes as the first 8 bytes of the digest.
pub(crate) fn murmur3_x64_64(data: &[u8]) -> u64 {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    fn fmix(mut k: u64) -> u64 {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let mut a = [0u8; 8];
        a.copy_from_slice(&block[..8]);
        let mut k1 = u64::from_le_bytes(a);
        a.copy_from_slice(&block[8..]);
        let mut k2 = u64::from_le_bytes(a);
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1.rotate_left(27).wrapping_add(h2);
        h1 = h1.wrapping_mul(5).wrapping_add(0x52dc_e729);
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2.rotate_left(31).wrapping_add(h1);
        h2 = h2.wrapping_mul(5).wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, b) in tail.iter().enumerate() {
        if i < 8 {
            k1 |= u64::from(*b) << (8 * i);
        } else {
            k2 |= u64::from(*b) << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
    }
    if !tail.is_empty() {
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1.wrapping_add(h2)
}

/// The slot of `name` at `level` for a fanout of `2^bits`: bits `level*bits ..` of the
/// (extended) hash, most significant first; a slot may straddle two rounds of the hash.
fn slot(name: &[u8], level: usize, bits: u32) -> usize {
    let start = level * bits as usize;
    let mut round = usize::MAX;
    let mut h = 0u64;
    let mut out = 0usize;
    for p in start..start + bits as usize {
        if p / 64 != round {
            round = p / 64;
            h = round_hash(name, round);
        }
        out = (out << 1) | ((h >> (63 - p % 64)) & 1) as usize;
    }
    out
}

/// Round `round` of the extended hash: `hamt-sharding`'s `InfiniteHash` hashes the name, then
/// `name || [round]` for every further 64 bits.
fn round_hash(name: &[u8], round: usize) -> u64 {
    if round == 0 {
        return murmur3_x64_64(name);
    }
    let mut input = Vec::with_capacity(name.len() + 1);
    input.extend_from_slice(name);
    input.push(round as u8); // rounds stay below 64 (see MAX levels below)
    murmur3_x64_64(&input)
}

/// One folder entry as a shard links to it.
#[derive(Debug, Clone)]
pub(crate) struct ShardEntry {
    pub name: String,
    pub cid: Cid,
    /// Cumulative size of the entry's DAG (the link's Tsize).
    pub tsize: u64,
}

/// Builds the HAMT of `entries` (distinct names, any order) into `sink`; returns the root
/// shard's CID and cumulative size.
pub(crate) fn build<S: BlockSink>(entries: Vec<ShardEntry>, sink: &S) -> Result<(Cid, u64)> {
    build_level(entries, 0, sink)
}

fn build_level<S: BlockSink>(
    entries: Vec<ShardEntry>,
    level: usize,
    sink: &S,
) -> Result<(Cid, u64)> {
    // 64 levels of 8 bits would need 64 rounds of identical hashes: not reachable with
    // distinct names, but stop rather than recurse for ever.
    if level >= 64 {
        return Err(StoreError::Unsupported {
            subject: entries.first().map(|e| e.name.clone()).unwrap_or_default(),
            what: "HAMT deeper than 64 levels (hash collision)".into(),
        });
    }
    let mut slots: Vec<Vec<ShardEntry>> = vec![Vec::new(); HAMT_FANOUT];
    for e in entries {
        let i = slot(e.name.as_bytes(), level, 8);
        slots[i].push(e);
    }
    let mut bitfield = [0u8; HAMT_FANOUT / 8];
    let mut links: Vec<(Cid, String, u64)> = Vec::new();
    for (i, mut group) in slots.into_iter().enumerate() {
        let (cid, name, tsize) = match group.len() {
            0 => continue,
            1 => {
                let e = group.pop().expect("one entry");
                (e.cid, format!("{i:02X}{}", e.name), e.tsize)
            }
            _ => {
                let (cid, tsize) = build_level(group, level + 1, sink)?;
                (cid, format!("{i:02X}"), tsize)
            }
        };
        bitfield[HAMT_FANOUT / 8 - 1 - i / 8] |= 1 << (i % 8);
        links.push((cid, name, tsize));
    }
    let first = bitfield
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bitfield.len());
    let data = pb::encode_unixfs_hamt(&bitfield[first..], HASH_MURMUR3_X64_64, HAMT_FANOUT as u64);
    let block = pb::encode_node(links.iter().map(|(c, n, t)| (c, n.as_str(), *t)), &data);
    let cid = dag_pb_cid(&block);
    sink.put_block(&cid, &block)?;
    let tsize = block.len() as u64 + links.iter().map(|l| l.2).sum::<u64>();
    Ok((cid, tsize))
}

/// A shard node's parameters, checked.
struct Shard<'a> {
    cid: Cid,
    links: &'a [PbLink],
    /// Hex digits of the slot prefix in link names.
    pad: usize,
    bits: u32,
}

impl<'a> Shard<'a> {
    fn new(cid: &Cid, links: &'a [PbLink], unixfs: &pb::UnixFs) -> Result<Self> {
        if unixfs.kind != pb::UNIXFS_HAMT_SHARD {
            return Err(StoreError::malformed(cid, "expected a HAMT shard node"));
        }
        match unixfs.hash_type {
            Some(HASH_MURMUR3_X64_64) => {}
            other => {
                return Err(StoreError::Unsupported {
                    subject: cid.to_string(),
                    what: format!(
                        "HAMT hash function {other:?}; only murmur3-x64-64 (0x22) is known"
                    ),
                })
            }
        }
        let fanout = unixfs
            .fanout
            .ok_or_else(|| StoreError::malformed(cid, "HAMT shard without fanout"))?;
        // boxo accepts powers of two that are multiples of 8; 1024 bounds the work per node.
        if !(8..=1024).contains(&fanout) || !fanout.is_power_of_two() {
            return Err(StoreError::malformed(
                cid,
                format!("HAMT fanout {fanout} is not a power of two between 8 and 1024"),
            ));
        }
        let bits = fanout.trailing_zeros();
        let pad = format!("{:X}", fanout - 1).len();
        Ok(Shard {
            cid: *cid,
            links,
            pad,
            bits,
        })
    }

    /// Splits a link name into its slot and the entry name (empty for a child shard).
    fn split<'n>(&self, name: &'n str) -> Result<(usize, &'n str)> {
        let bad = || StoreError::malformed(&self.cid, format!("HAMT link name {name:?}"));
        let prefix = name.get(..self.pad).ok_or_else(bad)?;
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        {
            return Err(bad());
        }
        let slot = usize::from_str_radix(prefix, 16).map_err(|_| bad())?;
        if slot >> self.bits != 0 {
            return Err(bad());
        }
        Ok((slot, &name[self.pad..]))
    }
}

/// The links of a shard node that lead to child shards (names that are only a slot prefix).
pub(crate) fn child_shard_links(
    cid: &Cid,
    links: &[PbLink],
    unixfs: &pb::UnixFs,
) -> Result<Vec<Cid>> {
    let shard = Shard::new(cid, links, unixfs)?;
    let mut out = Vec::new();
    for link in links {
        let (_, entry) = shard.split(link.name.as_deref().unwrap_or(""))?;
        if entry.is_empty() {
            out.push(link.cid);
        }
    }
    Ok(out)
}

/// Calls `visit(name, link)` for every entry of the HAMT whose root shard is `cid`, loading
/// child shards from `src`, in shard order. `visit` may stop the walk by returning an error
/// (e.g. a limit on entries).
pub(crate) fn for_each_entry(
    src: &impl BlockSource,
    cid: &Cid,
    links: &[PbLink],
    unixfs: &pb::UnixFs,
    visit: &mut dyn FnMut(&str, &PbLink) -> Result<()>,
) -> Result<()> {
    walk(src, cid, links, unixfs, 0, visit)
}

fn walk(
    src: &impl BlockSource,
    cid: &Cid,
    links: &[PbLink],
    unixfs: &pb::UnixFs,
    depth: usize,
    visit: &mut dyn FnMut(&str, &PbLink) -> Result<()>,
) -> Result<()> {
    if depth > MAX_SHARD_DEPTH {
        return Err(StoreError::malformed(
            cid,
            format!("HAMT nested deeper than {MAX_SHARD_DEPTH} shards"),
        ));
    }
    let shard = Shard::new(cid, links, unixfs)?;
    for link in shard.links {
        let name = link.name.as_deref().unwrap_or("");
        let (_, entry) = shard.split(name)?;
        if entry.is_empty() {
            let (child_links, child_fs) = load_shard(src, &link.cid)?;
            walk(src, &link.cid, &child_links, &child_fs, depth + 1, visit)?;
        } else {
            visit(entry, link)?;
        }
    }
    Ok(())
}

fn load_shard(src: &impl BlockSource, cid: &Cid) -> Result<(Vec<PbLink>, pb::UnixFs)> {
    if cid.codec() != crate::hash::CODEC_DAG_PB {
        return Err(StoreError::malformed(cid, "HAMT child shard is not dag-pb"));
    }
    let block = src.get_block(cid)?;
    let node = pb::decode_node(&block).map_err(|e| StoreError::malformed(cid, e))?;
    let data = node
        .data
        .ok_or_else(|| StoreError::malformed(cid, "HAMT child shard without UnixFS data"))?;
    let unixfs = pb::decode_unixfs(&data)
        .map_err(|e| StoreError::malformed(cid, format!("UnixFS data: {e}")))?;
    Ok((node.links, unixfs))
}

/// Finds entry `name` in the HAMT whose root shard is `cid` by following its hash, as Kubo
/// resolves paths: one shard per level, never the whole folder. The child shards loaded on the
/// way are appended to `visited` (a trustless gateway sends them with a CAR for the path).
pub(crate) fn find(
    src: &impl BlockSource,
    cid: &Cid,
    links: &[PbLink],
    unixfs: &pb::UnixFs,
    name: &str,
    visited: &mut Vec<Cid>,
) -> Result<Option<PbLink>> {
    let mut current = (*cid, links.to_vec(), unixfs.clone());
    for level in 0..=MAX_SHARD_DEPTH {
        let (cid, links, unixfs) = &current;
        let shard = Shard::new(cid, links, unixfs)?;
        let want = slot(name.as_bytes(), level, shard.bits);
        let mut next = None;
        for link in shard.links {
            let (s, entry) = shard.split(link.name.as_deref().unwrap_or(""))?;
            if s != want {
                continue;
            }
            if entry.is_empty() {
                next = Some(link.cid);
                break;
            }
            if entry == name {
                return Ok(Some(link.clone()));
            }
        }
        match next {
            None => return Ok(None),
            Some(child) => {
                let (l, u) = load_shard(src, &child)?;
                visited.push(child);
                current = (child, l, u);
            }
        }
    }
    Err(StoreError::malformed(
        cid,
        format!("HAMT nested deeper than {MAX_SHARD_DEPTH} shards"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digests printed by the JS importer's hash (`@multiformats/murmur3`'s murmur3128): the
    /// first 8 bytes are h1, big-endian.
    #[test]
    fn murmur3_matches_known_digests() {
        assert_eq!(murmur3_x64_64(b""), 0);
        assert_eq!(murmur3_x64_64(b"hello"), 0xcbd8_a7b3_41bd_9b02);
        assert_eq!(murmur3_x64_64(b"file-0001"), 0x396c_a356_4d13_27ca);
        assert_eq!(murmur3_x64_64(b"a"), 0x8555_5565_f659_7889);
        assert_eq!(murmur3_x64_64(b"hello\x01"), 0xb8ea_181a_11c6_bf22);
        // 16+ bytes exercise the block loop and a tail longer than 8.
        let long = b"a name longer than sixteen bytes!";
        assert_ne!(murmur3_x64_64(long), murmur3_x64_64(&long[..32]));
    }

    #[test]
    fn slots_read_the_hash_from_the_top() {
        // "hello": h1 = cb d8 a7 ..., so level 0 is 0xcb, level 1 0xd8.
        assert_eq!(slot(b"hello", 0, 8), 0xcb);
        assert_eq!(slot(b"hello", 1, 8), 0xd8);
        assert_eq!(slot(b"hello", 7, 8), 0x02);
        // Level 8 starts round 1: hash of "hello" || [1] = b8 ea ...
        assert_eq!(slot(b"hello", 8, 8), 0xb8);
        // 4-bit fanout: nibbles.
        assert_eq!(slot(b"hello", 0, 4), 0xc);
        assert_eq!(slot(b"hello", 1, 4), 0xb);
    }
}
