//! Reading UnixFS DAGs: decoding nodes, streaming a file's bytes, listing and resolving folders,
//! walking every block of a DAG.

use std::collections::HashSet;

use cid::Cid;

use crate::blockstore::BlockSource;
use crate::error::{Result, StoreError};
use crate::hamt;
use crate::hash::{CODEC_DAG_PB, CODEC_RAW};
use crate::pb::{self, PbLink, UnixFs};

/// Deepest file tree accepted when reading (Kubo's trees are 3-4 levels for terabytes); stops a
/// crafted DAG from recursing without end.
const MAX_DEPTH: usize = 64;

/// A decoded UnixFS node.
pub(crate) enum Node {
    /// A raw block: file content.
    Raw(Vec<u8>),
    /// A dag-pb node with its UnixFS data.
    Pb { links: Vec<PbLink>, unixfs: UnixFs },
}

/// What a node is, as shown in directory listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Directory,
    /// UnixFS symlink, metadata: not handled by this crate.
    Other(&'static str),
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Directory => "directory",
            Kind::Other(s) => s,
        }
    }
}

impl Node {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Node::Raw(_) => Kind::File,
            Node::Pb { unixfs, .. } => match unixfs.kind {
                pb::UNIXFS_FILE | pb::UNIXFS_RAW => Kind::File,
                // A HAMT shard is a (sharded) folder: its entries are read through its shards.
                pb::UNIXFS_DIRECTORY | pb::UNIXFS_HAMT_SHARD => Kind::Directory,
                pb::UNIXFS_SYMLINK => Kind::Other("symlink"),
                pb::UNIXFS_METADATA => Kind::Other("metadata"),
                _ => Kind::Other("unknown"),
            },
        }
    }

    /// Content size of a file node (`None` for other kinds, or when the node does not say).
    pub(crate) fn file_size(&self) -> Option<u64> {
        match self {
            Node::Raw(data) => Some(data.len() as u64),
            // Without a filesize the size is only known for a node holding all its data.
            Node::Pb { unixfs, links } if self.kind() == Kind::File => {
                unixfs.filesize.or_else(|| {
                    links
                        .is_empty()
                        .then(|| unixfs.data.as_ref().map_or(0, |d| d.len() as u64))
                })
            }
            Node::Pb { .. } => None,
        }
    }
}

/// Decodes `block` (already verified against `cid`, or trusted) as UnixFS.
pub(crate) fn decode(cid: &Cid, block: Vec<u8>) -> Result<Node> {
    match cid.codec() {
        CODEC_RAW => Ok(Node::Raw(block)),
        CODEC_DAG_PB => {
            let node = pb::decode_node(&block).map_err(|e| StoreError::malformed(cid, e))?;
            let data = node
                .data
                .ok_or_else(|| StoreError::malformed(cid, "dag-pb node without UnixFS data"))?;
            let unixfs = pb::decode_unixfs(&data)
                .map_err(|e| StoreError::malformed(cid, format!("UnixFS data: {e}")))?;
            Ok(Node::Pb {
                links: node.links,
                unixfs,
            })
        }
        other => Err(unsupported_codec(cid, other)),
    }
}

fn unsupported_codec(cid: &Cid, codec: u64) -> StoreError {
    StoreError::UnsupportedCid {
        cid: *cid,
        reason: format!("codec {codec:#x} is neither raw (0x55) nor dag-pb (0x70)"),
    }
}

/// Loads and decodes block `cid`.
pub(crate) fn load(src: &impl BlockSource, cid: &Cid) -> Result<Node> {
    decode(cid, src.get_block(cid)?)
}

/// The CIDs a block links to (none for raw blocks). Works for any dag-pb node, UnixFS or not.
pub(crate) fn links_of(cid: &Cid, block: &[u8]) -> Result<Vec<Cid>> {
    match cid.codec() {
        CODEC_RAW => Ok(Vec::new()),
        CODEC_DAG_PB => {
            let node = pb::decode_node(block).map_err(|e| StoreError::malformed(cid, e))?;
            Ok(node.links.into_iter().map(|l| l.cid).collect())
        }
        other => Err(unsupported_codec(cid, other)),
    }
}

/// Calls `visit(cid, block)` for every distinct block of the DAG under `root`, depth-first in
/// link order (the order of a CAR from `ipfs dag export`). Stops at the first error.
pub(crate) fn walk_blocks(
    src: &impl BlockSource,
    root: &Cid,
    visit: &mut dyn FnMut(&Cid, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let block = src.get_block(&cid)?;
        visit(&cid, &block)?;
        let links = links_of(&cid, &block)?;
        stack.extend(links.into_iter().rev());
    }
    Ok(())
}

/// Streams the content of the file at `cid`, in order, one block's worth at a time.
/// Returns the number of bytes produced.
#[cfg(test)]
pub(crate) fn read_file(
    src: &impl BlockSource,
    cid: &Cid,
    out: &mut dyn FnMut(Vec<u8>) -> Result<()>,
) -> Result<u64> {
    read_file_node(src, cid, load(src, cid)?, out, &mut || Ok(()))
}

/// Like [`read_file`] for a node already loaded; `tick` is called before each child block is
/// loaded (a deadline check) and may stop the read with an error.
///
/// Declared sizes are checked before anything below a node is read: a node with links must
/// list one non-zero blocksize per link, adding up (with its own data) to its filesize, and
/// each child must declare the size its parent gives it. A forged DAG is thus caught one block
/// after the lie, never after streaming what it claims; repeated links to the same blocks (which
/// Kubo makes for repeated chunks) are fine, bounded by the declared size the caller checked.
pub(crate) fn read_file_node(
    src: &impl BlockSource,
    cid: &Cid,
    node: Node,
    out: &mut dyn FnMut(Vec<u8>) -> Result<()>,
    tick: &mut dyn FnMut() -> Result<()>,
) -> Result<u64> {
    read_file_at(src, cid, node, out, tick, 0)
}

/// The size a file node declares, checked against its blocksizes (see [`read_file_node`]).
pub(crate) fn declared_file_size(cid: &Cid, node: &Node) -> Result<u64> {
    match node {
        Node::Raw(data) => Ok(data.len() as u64),
        Node::Pb { .. } if node.kind() != Kind::File => Err(StoreError::malformed(
            cid,
            format!("expected a file, found a {}", node.kind().as_str()),
        )),
        Node::Pb { links, unixfs } => {
            let own = unixfs.data.as_ref().map_or(0, |d| d.len() as u64);
            if links.is_empty() {
                return match unixfs.filesize {
                    Some(fs) if fs != own => Err(StoreError::malformed(
                        cid,
                        format!("file node says {fs} bytes but holds {own}"),
                    )),
                    _ => Ok(own),
                };
            }
            if unixfs.blocksizes.len() != links.len() {
                return Err(StoreError::malformed(
                    cid,
                    format!(
                        "file node has {} links but {} blocksizes",
                        links.len(),
                        unixfs.blocksizes.len()
                    ),
                ));
            }
            if unixfs.blocksizes.contains(&0) {
                return Err(StoreError::malformed(
                    cid,
                    "file node links a child of 0 bytes",
                ));
            }
            let sum = unixfs
                .blocksizes
                .iter()
                .try_fold(own, |acc, b| acc.checked_add(*b))
                .ok_or_else(|| StoreError::malformed(cid, "blocksizes overflow"))?;
            match unixfs.filesize {
                Some(fs) if fs != sum => Err(StoreError::malformed(
                    cid,
                    format!("file node says {fs} bytes but its blocksizes add up to {sum}"),
                )),
                _ => Ok(sum),
            }
        }
    }
}

fn read_file_at(
    src: &impl BlockSource,
    cid: &Cid,
    node: Node,
    out: &mut dyn FnMut(Vec<u8>) -> Result<()>,
    tick: &mut dyn FnMut() -> Result<()>,
    depth: usize,
) -> Result<u64> {
    if depth > MAX_DEPTH {
        return Err(StoreError::malformed(
            cid,
            "file tree deeper than 64 levels",
        ));
    }
    let declared = declared_file_size(cid, &node)?;
    match node {
        Node::Raw(data) => {
            let n = data.len() as u64;
            if n > 0 {
                out(data)?;
            }
            Ok(n)
        }
        Node::Pb { links, unixfs } => {
            let mut total = 0;
            if let Some(data) = unixfs.data.filter(|d| !d.is_empty()) {
                total += data.len() as u64;
                out(data)?;
            }
            for (link, size) in links.iter().zip(&unixfs.blocksizes) {
                tick()?;
                let child = load(src, &link.cid)?;
                let child_declared = declared_file_size(&link.cid, &child)?;
                if child_declared != *size {
                    return Err(StoreError::malformed(
                        cid,
                        format!(
                            "child {} holds {child_declared} bytes but its parent says {size}",
                            link.cid
                        ),
                    ));
                }
                total += read_file_at(src, &link.cid, child, out, tick, depth + 1)?;
            }
            if total != declared {
                return Err(StoreError::malformed(
                    cid,
                    format!("file node says {declared} bytes but its blocks hold {total}"),
                ));
            }
            Ok(total)
        }
    }
}

/// An entry of a UnixFS folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirEntry {
    pub name: String,
    pub cid: Cid,
    pub tsize: u64,
}

/// The entries of folder node `node` (block `cid`; a plain folder or the root shard of a HAMT,
/// whose child shards are read from `src`), with names checked safe to use as a single path
/// component: not empty, not "." or "..", no '/' or NUL, no duplicates. At most `max_entries`
/// entries are read ([`StoreError::LimitExceeded`] beyond).
pub(crate) fn dir_entries(
    src: &impl BlockSource,
    cid: &Cid,
    node: &Node,
    max_entries: u64,
) -> Result<Vec<DirEntry>> {
    let (links, unixfs) = match (node, node.kind()) {
        (Node::Pb { links, unixfs }, Kind::Directory) => (links, unixfs),
        (_, kind) => {
            return Err(StoreError::malformed(
                cid,
                format!("expected a folder, found a {}", kind.as_str()),
            ))
        }
    };
    let mut seen = HashSet::new();
    let mut entries = Vec::new();
    let mut add = |name: &str, link: &PbLink| {
        if entries.len() as u64 >= max_entries {
            return Err(StoreError::LimitExceeded {
                cid: *cid,
                what: format!("folder has more than {max_entries} entries, over the limit on files and folders"),
            });
        }
        if !is_safe_name(name) || !seen.insert(name.to_string()) {
            return Err(StoreError::UnsafeName {
                cid: *cid,
                name: name.to_string(),
            });
        }
        entries.push(DirEntry {
            name: name.to_string(),
            cid: link.cid,
            tsize: link.tsize.unwrap_or(0),
        });
        Ok(())
    };
    if unixfs.kind == pb::UNIXFS_HAMT_SHARD {
        hamt::for_each_entry(src, cid, links, unixfs, &mut add)?;
    } else {
        for link in links {
            add(link.name.as_deref().unwrap_or(""), link)?;
        }
    }
    Ok(entries)
}

/// Whether `name` can be used as one path component without escaping its folder.
pub(crate) fn is_safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Follows `segments` (folder entry names) from `root`; returns the CID reached. HAMT folders
/// are looked up by the name's hash, one shard per level.
#[cfg(test)]
pub(crate) fn resolve_path<'a>(
    src: &impl BlockSource,
    root: &Cid,
    segments: impl IntoIterator<Item = &'a str>,
) -> Result<Cid> {
    Ok(resolve_path_traced(src, root, segments)?.target)
}

/// A path resolved, with what a verifier needs to check it.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The CID the path leads to.
    pub target: Cid,
    /// Every block read to get there (folders and HAMT shards), in order; empty for no path.
    pub path_blocks: Vec<Cid>,
    /// The logical roots: the root, then the CID each segment resolved to.
    pub roots: Vec<Cid>,
}

/// [`resolve_path`], also returning the blocks traversed and the logical roots.
pub(crate) fn resolve_path_traced<'a>(
    src: &impl BlockSource,
    root: &Cid,
    segments: impl IntoIterator<Item = &'a str>,
) -> Result<Resolved> {
    let mut cid = *root;
    let mut path_blocks = Vec::new();
    let mut roots = vec![*root];
    for segment in segments {
        let missing = |cid: Cid| StoreError::NoSuchEntry {
            cid,
            name: segment.to_string(),
        };
        let node = load(src, &cid)?;
        path_blocks.push(cid);
        let Node::Pb { links, unixfs } = &node else {
            return Err(missing(cid));
        };
        let link = match unixfs.kind {
            pb::UNIXFS_DIRECTORY => links
                .iter()
                .find(|l| l.name.as_deref() == Some(segment))
                .cloned(),
            pb::UNIXFS_HAMT_SHARD => {
                hamt::find(src, &cid, links, unixfs, segment, &mut path_blocks)?
            }
            _ => None,
        };
        cid = link.ok_or_else(|| missing(cid))?.cid;
        roots.push(cid);
    }
    Ok(Resolved {
        target: cid,
        path_blocks,
        roots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockstore::DiskBlockstore;
    use crate::importer::{add_path, CHUNK_SIZE};
    use std::fs;

    fn store_with_tree() -> (tempfile::TempDir, DiskBlockstore, Cid, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        fs::create_dir_all(top.join("sub")).unwrap();
        let big: Vec<u8> = (0..3 * CHUNK_SIZE + 5)
            .map(|i| ((i * 7 + i / 1000) % 256) as u8)
            .collect();
        fs::write(top.join("sub/big.bin"), &big).unwrap();
        fs::write(top.join("small"), b"hello\n").unwrap();
        let store = DiskBlockstore::open(dir.path().join("store")).unwrap();
        let root = add_path(&top, &store).unwrap();
        (dir, store, root, big)
    }

    #[test]
    fn resolve_and_read() {
        let (_dir, store, root, big) = store_with_tree();
        let cid = resolve_path(&store, &root, ["sub", "big.bin"]).unwrap();
        let mut out = Vec::new();
        let n = read_file(&store, &cid, &mut |b| {
            out.extend_from_slice(&b);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, big.len() as u64);
        assert_eq!(out, big);

        let err = resolve_path(&store, &root, ["nope"]).unwrap_err();
        assert!(matches!(err, StoreError::NoSuchEntry { ref name, .. } if name == "nope"));
        let err = resolve_path(&store, &root, ["small", "x"]).unwrap_err();
        assert!(matches!(err, StoreError::NoSuchEntry { .. }));
        assert!(
            read_file(&store, &root, &mut |_| Ok(())).is_err(),
            "a folder is not a file"
        );
    }

    #[test]
    fn walk_visits_each_block_once() {
        let (_dir, store, root, _) = store_with_tree();
        let mut seen = Vec::new();
        walk_blocks(&store, &root, &mut |cid, _| {
            seen.push(*cid);
            Ok(())
        })
        .unwrap();
        // root, sub, sub/big.bin node, its 4 leaves, small
        assert_eq!(seen.len(), 8);
        assert_eq!(seen[0], root);
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len());
    }

    #[test]
    fn unsafe_names() {
        for bad in ["", ".", "..", "a/b", "/etc", "nul\0"] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
        for good in ["a", "...", ".hidden", "a b", "データ", "a\\b"] {
            assert!(is_safe_name(good), "{good:?}");
        }
    }

    struct NoBlocks;
    impl BlockSource for NoBlocks {
        fn get_block(&self, cid: &Cid) -> Result<Vec<u8>> {
            Err(StoreError::NotFound { cid: *cid })
        }
    }

    #[test]
    fn dir_entries_rejects_traversal() {
        let leaf = crate::hash::raw_cid(b"x");
        for bad in ["..", "../escape", "a/b", ""] {
            let block = pb::encode_node([(&leaf, bad, 1u64)], &pb::UNIXFS_DIRECTORY_DATA);
            let cid = crate::hash::dag_pb_cid(&block);
            let node = decode(&cid, block).unwrap();
            let err = dir_entries(&NoBlocks, &cid, &node, u64::MAX).unwrap_err();
            assert!(matches!(err, StoreError::UnsafeName { .. }), "{bad:?}");
        }
        // Duplicate names would make one entry overwrite another.
        let block = pb::encode_node(
            [(&leaf, "a", 1u64), (&leaf, "a", 1u64)],
            &pb::UNIXFS_DIRECTORY_DATA,
        );
        let cid = crate::hash::dag_pb_cid(&block);
        let node = decode(&cid, block).unwrap();
        assert!(matches!(
            dir_entries(&NoBlocks, &cid, &node, u64::MAX),
            Err(StoreError::UnsafeName { .. })
        ));
    }
}
