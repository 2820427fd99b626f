//! Import throughput against `sha256sum` on the same file, in the same run.
//!
//! ```text
//! cargo run --release -p lilypad-store --example import_throughput -- [SIZE_MB] [RUNS] [FILE]
//! ```
//!
//! Writes SIZE_MB (default 200) of pseudo-random bytes to a temporary file (or uses FILE), then
//! RUNS (default 3) rounds of: `sha256sum FILE`, `cid_of_path(FILE)` (hash only) and
//! `add_path(FILE)` into a fresh DiskBlockstore on the same disk. Prints each run and the median
//! MB/s (1 MB = 10^6 bytes) of each. The file is read from the page cache after the first pass,
//! for all three alike. The file and the stores go in `$TMPDIR` (e.g. `TMPDIR=/dev/shm` takes the
//! disk out of `add_path`, which on a slow disk is bound by creating one file per block).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use lilypad_store::{add_path, cid_of_path, DiskBlockstore};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size_mb: usize = args.first().map_or(Ok(200), |s| s.parse())?;
    let runs: usize = args.get(1).map_or(Ok(3), |s| s.parse())?;
    let tmp = tempfile::tempdir()?;
    let file = match args.get(2) {
        Some(p) => Path::new(p).to_path_buf(),
        None => {
            let p = tmp.path().join("bench.bin");
            let mut f = std::io::BufWriter::new(fs::File::create(&p)?);
            let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut buf = vec![0u8; 1 << 20];
            for _ in 0..size_mb {
                for w in buf.chunks_exact_mut(8) {
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    w.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
                }
                f.write_all(&buf)?;
            }
            f.flush()?;
            p
        }
    };
    let bytes = fs::metadata(&file)?.len() as f64;
    println!("file: {} ({:.1} MB)", file.display(), bytes / 1e6);

    let (mut sha, mut hash_only, mut add) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let t = Instant::now();
        let out = Command::new("sha256sum").arg(&file).output()?;
        let s = t.elapsed().as_secs_f64();
        assert!(out.status.success(), "sha256sum failed");
        sha.push(bytes / s / 1e6);

        let t = Instant::now();
        let cid = cid_of_path(&file)?;
        let h = t.elapsed().as_secs_f64();
        hash_only.push(bytes / h / 1e6);

        let store_dir = tmp.path().join(format!("store-{run}"));
        let store = DiskBlockstore::open(&store_dir)?;
        let t = Instant::now();
        let added = add_path(&file, &store)?;
        let a = t.elapsed().as_secs_f64();
        add.push(bytes / a / 1e6);
        assert_eq!(cid, added);
        fs::remove_dir_all(&store_dir)?;

        println!(
            "run {run}: sha256sum {:.0} MB/s | cid_of_path {:.0} MB/s | add_path {:.0} MB/s  ({cid})",
            bytes / s / 1e6,
            bytes / h / 1e6,
            bytes / a / 1e6
        );
    }
    println!(
        "median of {runs}: sha256sum {:.0} MB/s | cid_of_path {:.0} MB/s | add_path {:.0} MB/s",
        median(sha),
        median(hash_only),
        median(add)
    );
    Ok(())
}
