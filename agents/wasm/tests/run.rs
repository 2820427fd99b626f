#![cfg(feature = "runtime")]
//! Runs real modules through wasmtime: the bad inputs of issue 15 (a module that traps, loops
//! for ever, grows its memory past the limit, writes past the outputs caps, floods stdout,
//! imports a function the host does not provide, is not WebAssembly at all), determinism, the
//! compiled-module cache and the lilysay example. Modules are written in the WebAssembly text
//! format here, so the tests need no WebAssembly compiler.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lilypad_wasm::{
    Determinism, Ending, JobFailure, WasmEngine, WasmError, WasmLimits, WasmSpec, KILLED_EXIT_CODE,
    TRAP_EXIT_CODE,
};

/// WASI imports and a memory, shared by the test modules.
const PRELUDE: &str = r#"
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (memory (export "memory") 2)
  ;; writes len bytes at ptr to fd, using the iovec at 16 and the count at 24
  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 16) (local.get $ptr))
    (i32.store (i32.const 20) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24)))
  ;; opens (creating, truncating) the file named by len bytes at ptr in /outputs (fd 3)
  (func $create (param $ptr i32) (param $len i32) (result i32)
    (call $path_open (i32.const 3) (i32.const 0) (local.get $ptr) (local.get $len)
      (i32.const 9) (i64.const 0x1FFFFFFF) (i64.const 0x1FFFFFFF) (i32.const 0) (i32.const 28)))
"#;

fn module(body: &str) -> Vec<u8> {
    wat::parse_str(format!("(module {PRELUDE} {body})")).expect("valid WAT")
}

struct Case {
    dir: tempfile::TempDir,
    wasm: PathBuf,
}

impl Case {
    fn new(bytes: &[u8]) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("m.wasm");
        std::fs::write(&wasm, bytes).unwrap();
        Case { dir, wasm }
    }

    fn spec(&self) -> WasmSpec {
        let mut s = WasmSpec::new(&self.wasm, vec!["m".into()]);
        s.limits = WasmLimits {
            memory_bytes: 4 << 20,
            fuel: 200_000_000,
            wall_time: Duration::from_secs(20),
            outputs_bytes: 1 << 20,
            outputs_files: 8,
            log_bytes: 64 << 10,
            ..WasmLimits::default()
        };
        s
    }

    fn result(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn engine() -> WasmEngine {
    WasmEngine::new(None).unwrap()
}

fn read(dir: &Path, name: &str) -> String {
    String::from_utf8_lossy(&std::fs::read(dir.join(name)).unwrap()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_writes_stdout_and_outputs_and_exits_with_its_code() {
    let c = Case::new(&module(
        r#"(data (i32.const 100) "hello\n") (data (i32.const 120) "out.txt")
           (func (export "_start")
             (drop (call $write (i32.const 1) (i32.const 100) (i32.const 6)))
             (if (call $create (i32.const 120) (i32.const 7)) (then (call $proc_exit (i32.const 90))))
             (drop (call $write (i32.load (i32.const 28)) (i32.const 100) (i32.const 6)))
             (call $proc_exit (i32.const 3)))"#,
    ));
    let out = engine().run("job-1", &c.spec(), &c.result("r")).await.unwrap();
    assert_eq!(out.ending, Ending::Exited(3));
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.failure(), Some(JobFailure::Exited { job: "job-1".into(), code: 3 }));
    assert_eq!(read(&out.result_dir, "stdout"), "hello\n");
    assert_eq!(read(&out.result_dir, "stderr"), "");
    assert_eq!(read(&out.result_dir, "exitCode"), "3\n");
    assert_eq!(read(&out.result_dir, "outputs/out.txt"), "hello\n");
    assert_eq!((out.output_files, out.output_bytes), (1, 6));
    assert!(out.compiled && out.fuel_used > 0);
    assert!(!c.result("r.tmp").exists(), "the temporary folder is renamed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_ends_the_run_with_a_note_and_code_134() {
    let c = Case::new(&module(r#"(func (export "_start") unreachable)"#));
    let out = engine().run("job-trap", &c.spec(), &c.result("r")).await.unwrap();
    assert!(matches!(&out.ending, Ending::Trapped(m) if m.contains("unreachable")), "{:?}", out.ending);
    assert_eq!(out.exit_code, TRAP_EXIT_CODE);
    let failure = out.failure().unwrap().to_string();
    assert!(failure.starts_with("job job-trap: ") && failure.contains("trapped"), "{failure}");
    let stderr = read(&out.result_dir, "stderr");
    assert!(stderr.contains("[lilypad-wasm] trapped: wasm `unreachable`"), "{stderr:?}");
    assert_eq!(read(&out.result_dir, "exitCode"), "134\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_looping_for_ever_runs_out_of_fuel_at_the_same_point_each_time() {
    let c = Case::new(&module(r#"(func (export "_start") (loop $l (br $l)))"#));
    let e = engine();
    let a = e.run("job-loop", &c.spec(), &c.result("a")).await.unwrap();
    let b = e.run("job-loop", &c.spec(), &c.result("b")).await.unwrap();
    assert_eq!(a.ending, Ending::OutOfFuel);
    assert_eq!(a.exit_code, KILLED_EXIT_CODE);
    assert_eq!(a.fuel_used, b.fuel_used, "fuel is the same on every run");
    assert!(a.failure().unwrap().to_string().contains("fuel"));
    assert!(!b.compiled, "the second run uses the compiled module kept in memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_looping_for_ever_is_stopped_at_the_wall_time_too() {
    let c = Case::new(&module(r#"(func (export "_start") (loop $l (br $l)))"#));
    let mut spec = c.spec();
    spec.limits.fuel = u64::MAX / 2;
    spec.limits.wall_time = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let out = engine().run("job-wall", &spec, &c.result("r")).await.unwrap();
    assert_eq!(out.ending, Ending::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(out.failure().unwrap().to_string().contains("wall-time"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_memory_past_the_limit_stops_the_run() {
    // 4 MiB allowed = 64 pages; the module grows by one page until it fails
    let c = Case::new(&module(
        r#"(func (export "_start")
             (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
             (call $proc_exit (i32.const 7)))"#,
    ));
    let out = engine().run("job-mem", &c.spec(), &c.result("r")).await.unwrap();
    assert_eq!(out.ending, Ending::MemoryLimit);
    assert_eq!(out.exit_code, KILLED_EXIT_CODE);
    assert!(out.failure().unwrap().to_string().contains("memory"));
    // a module declaring more memory than allowed from the start is stopped the same way
    let c = Case::new(&wat::parse_str(r#"(module (memory 100) (func (export "_start")))"#).unwrap());
    let out = engine().run("job-mem2", &c.spec(), &c.result("r")).await.unwrap();
    assert_eq!(out.ending, Ending::MemoryLimit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_past_the_outputs_byte_cap_fails_with_enospc_and_keeps_what_fit() {
    // 64 KiB writes to /outputs/big until one fails; exits with that errno
    let c = Case::new(&module(
        r#"(data (i32.const 100) "big")
           (func (export "_start") (local $err i32)
             (if (call $create (i32.const 100) (i32.const 3)) (then (call $proc_exit (i32.const 90))))
             (loop $l
               (local.set $err (call $write (i32.load (i32.const 28)) (i32.const 1024) (i32.const 65536)))
               (br_if $l (i32.eqz (local.get $err))))
             (call $proc_exit (local.get $err)))"#,
    ));
    let out = engine().run("job-big", &c.spec(), &c.result("r")).await.unwrap();
    assert_eq!(out.ending, Ending::Exited(51), "ENOSPC is errno 51");
    assert!(out.outputs_too_large);
    assert_eq!(out.output_bytes, 1 << 20, "16 writes of 64 KiB fit in 1 MiB");
    assert!(matches!(out.failure(), Some(JobFailure::OutputsTooLarge { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_more_files_than_the_cap_fails_with_enospc() {
    // creates f0, f1, ... until one fails; exits with that errno
    let c = Case::new(&module(
        r#"(data (i32.const 100) "f0")
           (func (export "_start") (local $err i32)
             (loop $l
               (local.set $err (call $create (i32.const 100) (i32.const 2)))
               (i32.store8 (i32.const 101) (i32.add (i32.load8_u (i32.const 101)) (i32.const 1)))
               (br_if $l (i32.eqz (local.get $err))))
             (call $proc_exit (local.get $err)))"#,
    ));
    let out = engine().run("job-files", &c.spec(), &c.result("r")).await.unwrap();
    assert_eq!(out.ending, Ending::Exited(51));
    assert!(out.outputs_too_large);
    assert_eq!(out.output_files, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_stdout_keeps_the_cap_and_counts_the_rest() {
    // 200 writes of 64 KiB (12.5 MiB) to stdout, then exit 0
    let c = Case::new(&module(
        r#"(func (export "_start") (local $i i32)
             (loop $l
               (drop (call $write (i32.const 1) (i32.const 1024) (i32.const 65536)))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $l (i32.lt_u (local.get $i) (i32.const 200)))))"#,
    ));
    let out = engine().run("job-flood", &c.spec(), &c.result("r")).await.unwrap();
    assert_eq!(out.ending, Ending::Exited(0));
    assert!(out.log_truncated);
    assert_eq!(out.stdout_bytes, 200 * 65536);
    assert_eq!(std::fs::metadata(out.result_dir.join("stdout")).unwrap().len(), 64 << 10);
    assert!(out.succeeded(), "a cut log is not a failure, as for Docker runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_importing_a_function_the_host_lacks_is_refused_by_name() {
    let c = Case::new(
        &wat::parse_str(
            r#"(module (import "env" "host_magic" (func)) (memory (export "memory") 1)
                 (func (export "_start") (call 0)))"#,
        )
        .unwrap(),
    );
    let e = engine().run("job-imp", &c.spec(), &c.result("r")).await.unwrap_err();
    assert!(matches!(&e, WasmError::MissingImport { module, name, .. } if module == "env" && name == "host_magic"), "{e}");
    assert!(e.to_string().starts_with("job job-imp: "), "{e}");
    assert!(!e.is_retryable());
    assert!(!c.result("r").exists() && !c.result("r.tmp").exists(), "nothing is left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_webassembly_is_refused() {
    let c = Case::new(b"#!/bin/sh\necho hello\n");
    let e = engine().run("job-sh", &c.spec(), &c.result("r")).await.unwrap_err();
    assert!(matches!(e, WasmError::NotWasm { .. }), "{e}");
    assert!(e.to_string().contains("magic bytes"), "{e}");
    // a component (WASI preview 2) is named as such
    let c = Case::new(&[0, b'a', b's', b'm', 0x0d, 0, 1, 0]);
    let e = engine().run("job-comp", &c.spec(), &c.result("r")).await.unwrap_err();
    assert!(e.to_string().contains("component"), "{e}");
    // WebAssembly that does not validate
    let c = Case::new(&[0, b'a', b's', b'm', 1, 0, 0, 0, 0xff]);
    let e = engine().run("job-bad", &c.spec(), &c.result("r")).await.unwrap_err();
    assert!(matches!(e, WasmError::Invalid { .. }), "{e}");
    // no _start
    let c = Case::new(&wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap());
    let e = engine().run("job-lib", &c.spec(), &c.result("r")).await.unwrap_err();
    assert!(matches!(e, WasmError::NoStart { .. }), "{e}");
    // a missing file
    let mut spec = c.spec();
    spec.wasm = c.dir.path().join("missing.wasm");
    let e = engine().run("job-missing", &spec, &c.result("r")).await.unwrap_err();
    assert!(matches!(e, WasmError::BadSpec { .. }) && e.to_string().contains("does not exist"), "{e}");
}

/// Prints 16 random bytes and the wall clock's nanoseconds, as hex-ish raw bytes.
const RANDOM_AND_CLOCK: &str = r#"
  (func (export "_start")
    (drop (call $random_get (i32.const 1024) (i32.const 16)))
    (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 1040)))
    (drop (call $write (i32.const 1) (i32.const 1024) (i32.const 24))))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_and_random_source_are_fixed_by_the_seed() {
    let c = Case::new(&module(RANDOM_AND_CLOCK));
    let e = engine();
    let run = |name: &'static str, d: Determinism| {
        let mut spec = c.spec();
        spec.determinism = d;
        let e = e.clone();
        let dir = c.result(name);
        async move { std::fs::read(e.run(name, &spec, &dir).await.unwrap().result_dir.join("stdout")).unwrap() }
    };
    let seeded = |b| Determinism { fixed_clock: true, random_seed: Some([b; 32]) };
    let a = run("a", seeded(1)).await;
    assert_eq!(a, run("b", seeded(1)).await, "same seed, same bytes");
    assert_ne!(a[..16], run("c", seeded(2)).await[..16], "another seed, other random bytes");
    assert_eq!(&a[16..], &[0u8; 8], "the fixed wall clock reads the epoch first");
    let host = Determinism { fixed_clock: false, random_seed: None };
    let h = run("d", host).await;
    assert_ne!(h[16..], [0u8; 8], "the host clock is not at the epoch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_modules_are_kept_on_disk_by_content_hash() {
    let c = Case::new(&module(r#"(func (export "_start"))"#));
    let cache = tempfile::tempdir().unwrap();
    let first = WasmEngine::new(Some(cache.path().into())).unwrap();
    assert!(first.prepare("job-c", &c.wasm).await.unwrap(), "compiled the first time");
    assert!(!first.prepare("job-c", &c.wasm).await.unwrap());
    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1);
    let sha = hex_of(&lilypad_wasm::sha256(&std::fs::read(&c.wasm).unwrap()));
    assert!(files[0].to_string_lossy().starts_with(&sha), "{files:?}");
    // a new engine (a restarted provider) loads it instead of compiling
    let second = WasmEngine::new(Some(cache.path().into())).unwrap();
    let out = second.run("job-c", &c.spec(), &c.result("r")).await.unwrap();
    assert!(!out.compiled);
    assert_eq!(out.ending, Ending::Exited(0));
    // a damaged cache file is compiled again, not trusted
    std::fs::write(cache.path().join(&files[0]), b"garbage").unwrap();
    let third = WasmEngine::new(Some(cache.path().into())).unwrap();
    assert!(third.prepare("job-c", &c.wasm).await.unwrap());
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
