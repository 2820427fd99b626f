//! Writing a complete, verified DAG out as files and folders, within a fetch's limits.
//!
//! Two passes over the DAG (already in a local blockstore): the first counts files and folders,
//! nesting, and the sizes the file nodes *declare*, and refuses the DAG before a byte is written
//! if any limit would be exceeded; the second writes, streaming each file block by block (never
//! a whole file in memory) and checking declared against actual sizes as it goes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use cid::Cid;

use crate::blockstore::DiskBlockstore;
use crate::dag::{self, Kind};
use crate::error::{Result, StoreError};
use crate::limits::Budget;

/// What the first pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub files: u64,
    pub folders: u64,
    pub bytes: u64,
}

/// Checks the DAG under `root` against `budget` without writing anything.
pub(crate) fn plan(store: &DiskBlockstore, root: &Cid, budget: &Budget) -> Result<Plan> {
    let mut plan = Plan::default();
    let node = dag::load(store, root)?;
    match node.kind() {
        Kind::File => add_file(&mut plan, root, &node, budget)?,
        Kind::Directory => plan_dir(store, root, &node, 0, &mut plan, budget)?,
        Kind::Other(kind) => return Err(unwritable(root, kind)),
    }
    Ok(plan)
}

fn unwritable(cid: &Cid, kind: &str) -> StoreError {
    StoreError::Unsupported {
        subject: cid.to_string(),
        what: format!("cannot write a UnixFS {kind}"),
    }
}

fn count_entry(plan: &Plan, cid: &Cid, budget: &Budget) -> Result<()> {
    let max = budget.limits.max_files;
    if plan.files + plan.folders >= max {
        return Err(StoreError::LimitExceeded {
            cid: *cid,
            what: format!("more than {max} files and folders under {}", budget.root),
        });
    }
    Ok(())
}

fn add_file(plan: &mut Plan, cid: &Cid, node: &dag::Node, budget: &Budget) -> Result<()> {
    count_entry(plan, cid, budget)?;
    let size = dag::declared_file_size(cid, node)?;
    let max = budget.limits.max_bytes;
    plan.bytes = plan.bytes.saturating_add(size);
    if plan.bytes > max {
        return Err(StoreError::LimitExceeded {
            cid: *cid,
            what: format!(
                "files declare at least {} bytes under {}, over the limit of {max}",
                plan.bytes, budget.root
            ),
        });
    }
    plan.files += 1;
    Ok(())
}

fn plan_dir(
    store: &DiskBlockstore,
    cid: &Cid,
    node: &dag::Node,
    depth: usize,
    plan: &mut Plan,
    budget: &Budget,
) -> Result<()> {
    budget.check_deadline()?;
    if depth > budget.limits.max_depth {
        return Err(StoreError::LimitExceeded {
            cid: *cid,
            what: format!("folders nested more than {} deep", budget.limits.max_depth),
        });
    }
    count_entry(plan, cid, budget)?;
    plan.folders += 1;
    let room = budget
        .limits
        .max_files
        .saturating_sub(plan.files + plan.folders);
    // One more than the room, so that a folder over the limit is reported as such.
    for entry in dag::dir_entries(store, cid, node, room.saturating_add(1))? {
        let child = dag::load(store, &entry.cid)?;
        match child.kind() {
            Kind::File => add_file(plan, &entry.cid, &child, budget)?,
            Kind::Directory => plan_dir(store, &entry.cid, &child, depth + 1, plan, budget)?,
            Kind::Other(kind) => {
                return Err(StoreError::Unsupported {
                    subject: format!("{} ({})", entry.name, entry.cid),
                    what: format!("UnixFS {kind} entries are not written"),
                })
            }
        }
    }
    Ok(())
}

/// Writes the DAG under `root` (complete in `store`, checked by [`plan`]) at `tree`. Returns
/// the files' paths relative to `tree`.
pub(crate) fn write_tree(
    store: &DiskBlockstore,
    root: &Cid,
    tree: &Path,
    budget: &Budget,
) -> Result<Vec<PathBuf>> {
    let node = dag::load(store, root)?;
    let mut w = Writer {
        store,
        budget,
        files: Vec::new(),
        bytes: 0,
    };
    match node.kind() {
        Kind::File => {
            fs::create_dir(tree).map_err(|e| StoreError::io(tree, e))?;
            let name = PathBuf::from(root.to_string());
            w.file(root, node, &tree.join(&name))?;
            w.files.push(name);
        }
        Kind::Directory => w.dir(root, node, tree, Path::new(""), 0)?,
        Kind::Other(kind) => return Err(unwritable(root, kind)),
    }
    Ok(w.files)
}

struct Writer<'a> {
    store: &'a DiskBlockstore,
    budget: &'a Budget,
    files: Vec<PathBuf>,
    bytes: u64,
}

impl Writer<'_> {
    fn dir(
        &mut self,
        cid: &Cid,
        node: dag::Node,
        path: &Path,
        rel: &Path,
        depth: usize,
    ) -> Result<()> {
        self.budget.check_deadline()?;
        if depth > self.budget.limits.max_depth {
            return Err(StoreError::LimitExceeded {
                cid: *cid,
                what: format!(
                    "folders nested more than {} deep",
                    self.budget.limits.max_depth
                ),
            });
        }
        fs::create_dir(path).map_err(|e| StoreError::io(path, e))?;
        let max = self.budget.limits.max_files;
        for entry in dag::dir_entries(self.store, cid, &node, max)? {
            let child = dag::load(self.store, &entry.cid)?;
            let child_path = path.join(&entry.name);
            let child_rel = rel.join(&entry.name);
            match child.kind() {
                Kind::File => {
                    self.file(&entry.cid, child, &child_path)?;
                    self.files.push(child_rel);
                }
                Kind::Directory => {
                    self.dir(&entry.cid, child, &child_path, &child_rel, depth + 1)?
                }
                Kind::Other(kind) => {
                    return Err(StoreError::Unsupported {
                        subject: format!("{} ({})", child_rel.display(), entry.cid),
                        what: format!("UnixFS {kind} entries are not written"),
                    })
                }
            }
        }
        Ok(())
    }

    fn file(&mut self, cid: &Cid, node: dag::Node, path: &Path) -> Result<()> {
        // create_new: never follow or replace anything already there.
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        let max = self.budget.limits.max_bytes;
        let budget = self.budget;
        let bytes = &mut self.bytes;
        dag::read_file_node(
            self.store,
            cid,
            node,
            &mut |chunk| {
                *bytes += chunk.len() as u64;
                if *bytes > max {
                    return Err(StoreError::LimitExceeded {
                        cid: *cid,
                        what: format!("more than {max} bytes written under {}", budget.root),
                    });
                }
                file.write_all(&chunk).map_err(|e| StoreError::io(path, e))
            },
            &mut || budget.check_deadline(),
        )?;
        file.flush().map_err(|e| StoreError::io(path, e))
    }
}
