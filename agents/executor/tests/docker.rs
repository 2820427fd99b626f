//! Integration tests against a real Docker engine (start one with `tools/docker-engine`).
//!
//! Without an engine these tests are skipped with a loud message, unless
//! `LILYPAD_REQUIRE_DOCKER` is set (CI sets it): then a missing engine fails them.
//! The test image is built at test start from Debian's `busybox-static` (`/bin/busybox`,
//! installed by `tools/docker-engine`): `FROM scratch`, one static binary, no symlinks.
//! Each test uses its own executor instance label, so tests running in parallel can check
//! that *their* containers and volumes are gone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lilypad_executor::{ExecError, Executor, ExecutorConfig, Limits, RunOutcome, RunSpec};

const IMAGE: &str = "lilypad-test/busybox:1";

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("lilypad_executor=info")),
        )
        .with_test_writer()
        .try_init();
}

/// An executor with its own instance label, or `None` (test skipped) when no engine answers
/// and `LILYPAD_REQUIRE_DOCKER` is unset.
async fn engine(test: &str) -> Option<Executor> {
    engine_with(test, true).await
}

/// [`engine`], copying outputs straight from the volumes' mount points where this host sees
/// them (`from_host`), or always through the engine's archive.
async fn engine_with(test: &str, from_host: bool) -> Option<Executor> {
    init_tracing();
    let config = ExecutorConfig {
        instance: format!("test-{test}-{}", std::process::id()),
        outputs_from_host: from_host,
        ..Default::default()
    };
    let required = std::env::var_os("LILYPAD_REQUIRE_DOCKER").is_some();
    let exec = match Executor::connect_with(config).await {
        Ok(e) => e,
        Err(e) if !required => {
            // Written to the real stderr, not through eprintln!, which the test harness
            // captures and hides for passing tests.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!!!!!!!! SKIPPING the Docker engine tests of lilypad-executor: {e}\n\
                     !!!!!!!! Run tools/docker-engine (as root) first, or set LILYPAD_REQUIRE_DOCKER=1 \
                     to make a missing engine a failure.\n"
                );
            });
            eprintln!("SKIPPED {test}: no Docker engine");
            return None;
        }
        Err(e) => panic!("LILYPAD_REQUIRE_DOCKER is set but no Docker engine answers: {e}"),
    };
    if let Err(e) = exec.preflight().await {
        panic!("preflight failed: {e}");
    }
    test_image(&exec).await;
    Some(exec)
}

static IMAGE_ID: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// Builds the busybox test image once per test binary.
async fn test_image(exec: &Executor) -> String {
    IMAGE_ID
        .get_or_init(|| async {
            let busybox = Path::new("/bin/busybox");
            assert!(
                busybox.is_file(),
                "/bin/busybox is missing: install Debian's busybox-static (tools/docker-engine does)"
            );
            let ctx = tempfile::tempdir().unwrap();
            std::fs::copy(busybox, ctx.path().join("busybox")).unwrap();
            std::fs::write(
                ctx.path().join("Dockerfile"),
                "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\", \"sh\", \"-c\"]\n",
            )
            .unwrap();
            exec.build_image(ctx.path(), IMAGE).await.expect("building the test image")
        })
        .await
        .clone()
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 64 << 20,
        nano_cpus: 1_000_000_000,
        pids: 64,
        nofile: 256,
        wall_time: Duration::from_secs(30),
        outputs_bytes: 1 << 20,
        outputs_files: 1000,
        tmp_bytes: 1 << 20,
        log_bytes: 64 << 10,
    }
}

fn spec(script: &str) -> RunSpec {
    RunSpec {
        cmd: vec![script.to_string()],
        limits: limits(),
        ..RunSpec::new(IMAGE)
    }
}

/// A fresh, not yet existing result folder (and the temp dir that holds it).
fn result_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("result");
    (d, r)
}

fn read(p: impl AsRef<Path>) -> String {
    String::from_utf8_lossy(
        &std::fs::read(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display())),
    )
    .into_owned()
}

/// Nothing of this executor instance is left in the engine (containers and volumes) once its
/// background removals are over and the outputs volumes it prepared ahead are released.
async fn assert_nothing_left(exec: &Executor) {
    exec.release().await;
    let left = exec.list_own_containers().await.unwrap();
    assert!(left.is_empty(), "containers left behind: {left:?}");
    let filter = HashMap::from([(
        "label",
        vec![format!("lilypad.executor={}", exec.config().instance)],
    )]);
    let vols = exec
        .docker()
        .list_volumes(Some(
            bollard::query_parameters::ListVolumesOptionsBuilder::default()
                .filters(&filter)
                .build(),
        ))
        .await
        .unwrap();
    let vols: Vec<_> = vols
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert!(vols.is_empty(), "volumes left behind: {vols:?}");
}

async fn run(
    exec: &Executor,
    job: &str,
    spec: &RunSpec,
) -> (tempfile::TempDir, PathBuf, RunOutcome) {
    let (tmp, dir) = result_dir();
    let t = Instant::now();
    let out = exec
        .run(job, spec, &dir)
        .await
        .unwrap_or_else(|e| panic!("run {job}: {e}"));
    eprintln!("{job}: {:?} (run took {:?})", out, t.elapsed());
    assert!(
        !tmp.path().join("result.tmp").exists(),
        "the temporary folder is renamed"
    );
    for f in ["stdout", "stderr", "exitCode"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert!(dir.join("outputs").is_dir());
    assert_eq!(read(dir.join("exitCode")), format!("{}\n", out.exit_code));
    assert_nothing_left(exec).await;
    (tmp, dir, out)
}

#[tokio::test]
async fn job_writes_outputs_stdout_stderr_and_exit_code() {
    let Some(exec) = engine("outputs").await else {
        return;
    };
    let inputs = tempfile::tempdir().unwrap();
    std::fs::write(inputs.path().join("in.txt"), "input data").unwrap();
    let mut s = spec(
        "echo to-stdout; echo to-stderr >&2; mkdir -p /outputs/sub; cat /inputs/in.txt > /outputs/sub/copy.txt; \
         echo \"$GREETING from $(pwd)\" > /outputs/greeting; head -c 5000 /dev/zero > /outputs/zeros",
    );
    s.env = vec![("GREETING".into(), "hello".into())];
    s.workdir = Some("/tmp".into());
    s.inputs_dir = Some(inputs.path().to_path_buf());
    let (_t, dir, out) = run(&exec, "outputs", &s).await;
    assert!(out.succeeded(), "{out:?}");
    assert_eq!(out.exit_code, 0);
    assert_eq!(read(dir.join("exitCode")), "0\n");
    assert_eq!(read(dir.join("stdout")), "to-stdout\n");
    assert_eq!(read(dir.join("stderr")), "to-stderr\n");
    assert_eq!(read(dir.join("outputs/sub/copy.txt")), "input data");
    assert_eq!(read(dir.join("outputs/greeting")), "hello from /tmp\n");
    assert_eq!(
        std::fs::read(dir.join("outputs/zeros")).unwrap(),
        vec![0u8; 5000]
    );
    assert_eq!((out.output_files, out.output_bytes), (3, 10 + 16 + 5000));
    assert!(!out.log_truncated && !out.outputs_too_large && !out.timed_out && !out.oom_killed);
    assert_eq!((out.stdout_bytes, out.stderr_bytes), (10, 10));
}

#[tokio::test]
async fn non_zero_exit_is_an_outcome_not_an_error() {
    let Some(exec) = engine("exit").await else {
        return;
    };
    let (_t, dir, out) = run(
        &exec,
        "exit-3",
        &spec("echo partial > /outputs/p; echo failing >&2; exit 3"),
    )
    .await;
    assert_eq!(out.exit_code, 3);
    assert!(!out.succeeded());
    assert!(!out.timed_out && !out.oom_killed);
    assert_eq!(read(dir.join("exitCode")), "3\n");
    assert_eq!(read(dir.join("stderr")), "failing\n");
    assert_eq!(read(dir.join("outputs/p")), "partial\n");
}

#[tokio::test]
async fn wall_time_limit_kills_the_job() {
    let Some(exec) = engine("timeout").await else {
        return;
    };
    let mut s = spec("echo started; sleep 60; echo never");
    s.limits.wall_time = Duration::from_secs(2);
    let (_t, dir, out) = run(&exec, "timeout", &s).await;
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.exit_code, 137, "SIGKILL");
    assert!(
        out.duration >= Duration::from_secs(2) && out.duration < Duration::from_secs(10),
        "{:?}",
        out.duration
    );
    assert_eq!(read(dir.join("stdout")), "started\n");
    assert!(!out.succeeded());
}

#[tokio::test]
async fn outputs_above_the_cap_fail_cleanly() {
    // straight from the volume's mount point, and through the engine's archive
    for from_host in [true, false] {
        let Some(exec) = engine_with(&format!("outputs-cap-{from_host}"), from_host).await else {
            return;
        };
        let mut s = spec(
            "echo small > /outputs/small; dd if=/dev/zero of=/outputs/big bs=4096 count=1000 || exit 5; echo unreachable",
        );
        s.limits.outputs_bytes = 256 << 10;
        let (_t, dir, out) = run(&exec, "outputs-cap", &s).await;
        assert!(out.outputs_too_large, "{out:?}");
        assert_eq!(out.exit_code, 5, "dd got ENOSPC");
        assert!(read(dir.join("stderr")).contains("No space left on device"));
        assert!(out.output_bytes <= 256 << 10, "{}", out.output_bytes);
        assert_eq!(read(dir.join("outputs/small")), "small\n");
        assert!(!out.succeeded());
    }
}

#[tokio::test]
async fn too_many_output_files_fill_the_inode_cap() {
    // straight from the volume's mount point, and through the engine's archive
    for from_host in [true, false] {
        let Some(exec) = engine_with(&format!("outputs-files-{from_host}"), from_host).await else {
            return;
        };
        let mut s =
            spec("i=0; while [ $i -lt 100 ]; do echo $i > /outputs/f$i || exit 6; i=$((i+1)); done");
        s.limits.outputs_files = 20;
        let (_t, _dir, out) = run(&exec, "outputs-files", &s).await;
        assert_eq!(out.exit_code, 6);
        assert!(out.outputs_too_large, "{out:?}");
        assert_eq!(
            out.output_files, 20,
            "outputs_files entries may be created, not one more"
        );
    }
}

#[tokio::test]
async fn fork_bomb_is_contained_by_the_pids_limit() {
    let Some(exec) = engine("fork-bomb").await else {
        return;
    };
    // The bomb saturates the pids limit. The main shell must not fork after starting it (a
    // failed fork ends a non-interactive ash): it waits 2 s with `read -t` on a fifo, counts
    // the processes with built-ins only, and exits, which ends every process of the container.
    let mut s = spec(
        "mkfifo /tmp/wait; f() { f | f & }; f; read -t 2 x <>/tmp/wait; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; \
         echo procs=$n; exit 0",
    );
    s.limits.pids = 32;
    s.limits.wall_time = Duration::from_secs(20);
    let t = Instant::now();
    let (_t, dir, out) = run(&exec, "fork-bomb", &s).await;
    assert!(!out.timed_out, "{out:?}");
    assert_eq!(out.exit_code, 0);
    let stdout = read(dir.join("stdout"));
    let procs: u32 = stdout
        .trim()
        .strip_prefix("procs=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "unexpected stdout {stdout:?}, stderr {:?}",
                read(dir.join("stderr"))
            )
        });
    assert!(
        procs <= 32,
        "{procs} processes in a container limited to 32"
    );
    assert!(read(dir.join("stderr")).contains("fork"), "forks failed");
    // The host is fine: it can still start processes, quickly.
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
    assert!(t.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn memory_above_the_limit_is_oom_killed() {
    let Some(exec) = engine("oom").await else {
        return;
    };
    let mut s = spec("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}");
    s.limits.memory_bytes = 32 << 20;
    let (_t, _dir, out) = run(&exec, "oom", &s).await;
    assert!(out.oom_killed, "{out:?}");
    assert_eq!(out.exit_code, 137);
    assert!(!out.succeeded());
}

/// This executor's containers of one role (`job`, `holder`), any state.
async fn role_containers(exec: &Executor, role: &str) -> Vec<String> {
    let filter = HashMap::from([(
        "label",
        vec![format!("lilypad.executor={}", exec.config().instance), format!("lilypad.role={role}")],
    )]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default().all(true).filters(&filter).build();
    exec.docker().list_containers(Some(options)).await.unwrap().into_iter().filter_map(|c| c.id).collect()
}

/// This executor's volumes.
async fn own_volumes(exec: &Executor) -> Vec<String> {
    let filter = HashMap::from([("label", vec![format!("lilypad.executor={}", exec.config().instance)])]);
    let options = bollard::query_parameters::ListVolumesOptionsBuilder::default().filters(&filter).build();
    let vols = exec.docker().list_volumes(Some(options)).await.unwrap();
    vols.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect()
}

#[tokio::test]
async fn each_job_gets_a_fresh_outputs_volume_of_its_own_prepared_ahead() {
    let Some(exec) = engine("pool").await else {
        return;
    };
    // Jobs of the same outputs size share a batch (one holder, volumes prepared ahead), and
    // none sees another's outputs: each volume is empty and serves one job only.
    let writes = "ls -A /outputs; echo secret > /outputs/mine; mkdir /outputs/d; echo x > /outputs/d/f";
    let mut seen = Vec::new();
    for i in 0..3 {
        let (_t, dir) = result_dir();
        let out = exec.run(&format!("pool-{i}"), &spec(writes), &dir).await.unwrap();
        assert_eq!(out.exit_code, 0, "{out:?}: {}", read(dir.join("stderr")));
        assert_eq!(read(dir.join("stdout")), "", "job {i} found files in its outputs volume");
        assert_eq!(read(dir.join("outputs/mine")), "secret\n");
        let outputs = dir.join("outputs");
        let mut names: Vec<_> = walk(&outputs).iter().map(|p| p.strip_prefix(&outputs).unwrap().to_path_buf()).collect();
        names.sort();
        seen.push(names);
        // the volumes were prepared ahead: one holder, kept between runs, and spare volumes
        assert_eq!(role_containers(&exec, "holder").await.len(), 1, "one holder for the batch");
        assert!(own_volumes(&exec).await.len() > 1, "volumes prepared ahead");
    }
    assert!(seen.iter().all(|names| names.len() == 3 && names == &seen[0]), "{seen:?}");
    // A job of another outputs size gets a volume of its size, not a pooled one of another.
    let mut small = spec("head -c 70000 /dev/zero > /outputs/big; echo $? >&2");
    small.limits.outputs_bytes = 64 << 10;
    let (_t, dir) = result_dir();
    let out = exec.run("pool-small", &small, &dir).await.unwrap();
    assert!(out.outputs_too_large, "the 64 KiB cap holds for a pooled volume: {out:?}");
    assert_eq!(role_containers(&exec, "holder").await.len(), 2, "a batch per outputs size");
    assert_nothing_left(&exec).await;
}

#[tokio::test]
async fn network_is_none() {
    let Some(exec) = engine("network").await else {
        return;
    };
    let (_t, dir, out) = run(
        &exec,
        "network",
        &spec("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; nc -w 2 1.1.1.1 80 </dev/null; echo nc=$? >&2"),
    )
    .await;
    assert_eq!(out.exit_code, 0);
    assert_eq!(
        read(dir.join("stdout")),
        "lo\n",
        "only the loopback interface"
    );
    let stderr = read(dir.join("stderr"));
    assert!(stderr.contains("nc=1"), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
}

#[tokio::test]
async fn runs_as_non_root_without_capabilities() {
    let Some(exec) = engine("non-root").await else {
        return;
    };
    let (_t, dir, out) = run(
        &exec,
        "non-root",
        &spec("id -u; id -g; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status; ulimit -n"),
    )
    .await;
    assert_eq!(out.exit_code, 0);
    let stdout = read(dir.join("stdout"));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "65534", "uid");
    assert_eq!(lines[1], "65534", "gid");
    for cap in ["CapEff", "CapPrm", "CapBnd"] {
        assert!(
            stdout.contains(&format!("{cap}:\t0000000000000000")),
            "{cap} not empty: {stdout}"
        );
    }
    assert!(stdout.contains("NoNewPrivs:\t1"), "{stdout}");
    assert_eq!(lines.last(), Some(&"256"), "nofile");
}

#[tokio::test]
async fn root_filesystem_and_inputs_are_read_only() {
    let Some(exec) = engine("read-only").await else {
        return;
    };
    let inputs = tempfile::tempdir().unwrap();
    std::fs::write(inputs.path().join("in.txt"), "keep").unwrap();
    let mut s = spec(
        "touch /x 2>/dev/null && echo rootfs-writable; echo > /bin/busybox 2>/dev/null && echo binary-writable; \
         echo evil > /inputs/in.txt 2>/dev/null && echo inputs-writable; touch /inputs/new 2>/dev/null && echo inputs-new; \
         mount | grep ' / ' | grep -q '(ro' && echo root-ro; echo ok > /tmp/t && cat /tmp/t",
    );
    s.inputs_dir = Some(inputs.path().to_path_buf());
    // Running as root inside must not help either (capabilities are dropped).
    s.user = Some("0:0".into());
    let (_t, dir, out) = run(&exec, "read-only", &s).await;
    assert_eq!(out.exit_code, 0);
    assert_eq!(read(dir.join("stdout")), "root-ro\nok\n");
    assert_eq!(read(inputs.path().join("in.txt")), "keep");
    assert!(!inputs.path().join("new").exists());
}

#[tokio::test]
async fn symlinks_in_outputs_are_not_copied() {
    // straight from the volume's mount point, and through the engine's archive
    for from_host in [true, false] {
        let Some(exec) = engine_with(&format!("symlinks-{from_host}"), from_host).await else {
            return;
        };
        let (_t, dir, out) = run(
            &exec,
            "symlinks",
            &spec(
                "ln -s /etc/passwd /outputs/passwd; ln -s / /outputs/root; mkdir /outputs/d; ln -s .. /outputs/d/up; \
                 echo real > /outputs/real; ln /outputs/real /outputs/hard; mkfifo /outputs/fifo",
            ),
        )
        .await;
        assert_eq!(out.exit_code, 0);
        let outputs = dir.join("outputs");
        let mut names: Vec<String> = Vec::new();
        for e in walk(&outputs) {
            let meta = std::fs::symlink_metadata(&e).unwrap();
            assert!(
                meta.is_file() || meta.is_dir(),
                "{} is neither a file nor a folder",
                e.display()
            );
            names.push(e.strip_prefix(&outputs).unwrap().display().to_string());
        }
        names.sort();
        // `real` and `hard` are one file: the archive holds it once, the other name as a hardlink
        // entry, which is skipped (which name comes first depends on the engine's walk order).
        assert!(
            names == ["d", "hard"] || names == ["d", "real"],
            "{names:?}"
        );
        assert_eq!(read(outputs.join(&names[1])), "real\n");
        assert_eq!(out.skipped_count, 5, "{:?}", out.skipped);
        assert!(
            out.skipped.iter().any(|s| s == "outputs/passwd: symlink"),
            "{:?}",
            out.skipped
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_flood_is_capped() {
    let Some(exec) = engine("flood").await else {
        return;
    };
    let mut s = spec("yes | head -c 200000000; echo done >&2");
    s.limits.log_bytes = 64 << 10;
    let t = Instant::now();
    let (_t, dir, out) = run(&exec, "flood", &s).await;
    eprintln!("200 MB of stdout drained in {:?}", t.elapsed());
    assert_eq!(out.exit_code, 0);
    assert!(out.log_truncated);
    assert_eq!(out.stdout_bytes, 200_000_000);
    let stdout = std::fs::read(dir.join("stdout")).unwrap();
    assert_eq!(stdout.len(), 64 << 10);
    assert!(stdout.starts_with(b"y\ny\n"));
    assert_eq!(read(dir.join("stderr")), "done\n");
}

#[tokio::test]
async fn missing_image_is_fatal_and_leaves_nothing() {
    let Some(exec) = engine("missing-image").await else {
        return;
    };
    let (_t, dir) = result_dir();
    let e = exec
        .run(
            "missing",
            &RunSpec::new("lilypad-test/does-not-exist:0"),
            &dir,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::ImageNotFound { .. }), "{e}");
    assert!(!e.is_retryable());
    assert_eq!(e.job(), Some("missing"));
    assert!(!dir.exists());
    assert_nothing_left(&exec).await;
}

#[tokio::test]
async fn bad_entrypoint_is_fatal_and_leaves_nothing() {
    let Some(exec) = engine("bad-entrypoint").await else {
        return;
    };
    let (t, dir) = result_dir();
    let mut s = spec("x");
    s.entrypoint = Some(vec!["/no/such/program".into()]);
    let e = exec.run("bad-entry", &s, &dir).await.unwrap_err();
    assert!(matches!(e, ExecError::StartFailed { .. }), "{e}");
    assert!(!e.is_retryable());
    assert!(!dir.exists() && !t.path().join("result.tmp").exists());
    assert_nothing_left(&exec).await;
}

#[tokio::test]
async fn existing_result_dir_is_refused() {
    let Some(exec) = engine("exists").await else {
        return;
    };
    let (_t, dir) = result_dir();
    std::fs::create_dir(&dir).unwrap();
    let e = exec.run("exists", &spec("true"), &dir).await.unwrap_err();
    assert!(matches!(e, ExecError::BadSpec { .. }), "{e}");
}

#[tokio::test]
async fn dropping_a_run_removes_its_containers() {
    let Some(exec) = engine("cancel").await else {
        return;
    };
    let (_t, dir) = result_dir();
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        exec.run("cancelled", &spec("sleep 60"), &dir),
    )
    .await;
    assert!(r.is_err(), "the run was cut by the timeout");
    // the job's container goes by itself (the outputs holder prepared ahead stays until
    // released)
    let t = Instant::now();
    while !role_containers(&exec, "job").await.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "containers of a dropped run were not removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_nothing_left(&exec).await;
    assert!(!dir.exists());
    assert!(
        !_t.path().join("result.tmp").exists(),
        "the unfinished result folder is removed"
    );
}

#[tokio::test]
async fn cleanup_leftovers_removes_what_a_crash_left() {
    let Some(exec) = engine("leftovers").await else {
        return;
    };
    // What a crashed executor leaves: labelled containers (one running) and a volume.
    let labels = HashMap::from([
        ("lilypad.job".to_string(), "crashed".to_string()),
        (
            "lilypad.executor".to_string(),
            exec.config().instance.clone(),
        ),
    ]);
    for (i, script) in ["sleep 60", "true"].iter().enumerate() {
        let body = bollard::models::ContainerCreateBody {
            image: Some(IMAGE.into()),
            cmd: Some(vec![script.to_string()]),
            labels: Some(labels.clone()),
            host_config: Some(bollard::models::HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("lilypad-test-leftover-{}-{i}", std::process::id());
        exec.docker()
            .create_container(
                Some(
                    bollard::query_parameters::CreateContainerOptionsBuilder::default()
                        .name(&name)
                        .build(),
                ),
                body,
            )
            .await
            .unwrap();
        if i == 0 {
            exec.docker().start_container(&name, None).await.unwrap();
        }
    }
    exec.docker()
        .create_volume(bollard::models::VolumeCreateRequest {
            name: Some(format!("lilypad-test-leftover-{}", std::process::id())),
            labels: Some(labels),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(exec.list_own_containers().await.unwrap().len(), 2);
    assert_eq!(exec.cleanup_leftovers().await.unwrap(), 3);
    assert_nothing_left(&exec).await;
    assert_eq!(exec.cleanup_leftovers().await.unwrap(), 0);
}

#[tokio::test]
async fn images_load_and_bad_builds_fail() {
    let Some(exec) = engine("images").await else {
        return;
    };
    let id = test_image(&exec).await;
    assert!(exec.has_image(IMAGE).await.unwrap());
    assert!(!exec
        .has_image("lilypad-test/does-not-exist:0")
        .await
        .unwrap());

    // docker save -> docker load gives back the same image.
    let mut saved = Vec::new();
    let mut s = exec.docker().export_image(IMAGE);
    while let Some(chunk) = s.next().await {
        saved.extend_from_slice(&chunk.unwrap());
    }
    let loaded = exec.load_image(std::io::Cursor::new(saved)).await.unwrap();
    assert_eq!(loaded, id);

    let e = exec
        .load_image(std::io::Cursor::new(b"not a tar".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::BadImage { .. }), "{e}");
    assert!(!e.is_retryable());

    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY missing-file /x\n",
    )
    .unwrap();
    let e = exec
        .build_image(ctx.path(), "lilypad-test/broken:1")
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::BadImage { .. }), "{e}");
    assert!(!e.is_retryable());
    let e = exec
        .build_image(Path::new("/nonexistent-context"), "lilypad-test/broken:1")
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::BadImage { .. }), "{e}");
}

#[tokio::test]
async fn preflight_reports_the_engine() {
    let Some(exec) = engine("preflight").await else {
        return;
    };
    let info = exec.preflight().await.unwrap();
    assert!(!info.server_version.is_empty());
    assert!(!info.architecture.is_empty());
    assert!(info.memory_limit && info.pids_limit, "{info:?}");
}

/// Needs no engine: a missing one gives a retryable error saying what to do.
#[tokio::test]
async fn missing_engine_explains_what_to_do() {
    // A socket file nobody listens on (connection refused).
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let endpoint = format!("unix://{}", sock.display());
    let docker =
        bollard::Docker::connect_with_unix(&endpoint, 5, bollard::API_DEFAULT_VERSION).unwrap();
    let exec = Executor::with_docker(docker, endpoint.clone(), ExecutorConfig::default());
    let e = exec.preflight().await.unwrap_err();
    assert!(matches!(e, ExecError::EngineUnavailable { .. }), "{e:?}");
    assert!(e.is_retryable());
    let msg = e.to_string();
    assert!(
        msg.contains("tools/bootstrap --docker") && msg.contains(&endpoint),
        "{msg}"
    );
}

/// GPU jobs take their devices from the executor's allocator before anything is created: none
/// on the host is a fatal "has no GPU", devices held by another job a retryable "busy"; the
/// held device is never handed out twice.
#[tokio::test]
async fn gpu_jobs_wait_for_free_devices_and_fail_clearly_without_any() {
    let Some(exec) = engine("gpu-alloc").await else {
        return;
    };
    let mut s = spec("true");
    s.gpus = Some(lilypad_executor::GpuRequest { count: Some(1), device_ids: Vec::new() });
    let none = Executor::with_docker(
        exec.docker().clone(),
        "test",
        ExecutorConfig { instance: exec.config().instance.clone(), gpus: lilypad_executor::GpuAllocator::new(Vec::new()), ..Default::default() },
    );
    let (_t, dir) = result_dir();
    let err = none.run("gpu-none", &s, &dir).await.unwrap_err();
    assert!(matches!(err, ExecError::Gpus { .. }) && !err.is_retryable(), "{err}");
    assert!(err.to_string().contains("no GPU"), "{err}");

    let one = lilypad_executor::GpuAllocator::new(vec!["0".into()]);
    let held = one.acquire(Some(1), &[]).unwrap();
    let busy = Executor::with_docker(
        exec.docker().clone(),
        "test",
        ExecutorConfig { instance: exec.config().instance.clone(), gpus: one.clone(), ..Default::default() },
    );
    let err = busy.run("gpu-busy", &s, &dir).await.unwrap_err();
    assert!(matches!(err, ExecError::Gpus { .. }) && err.is_retryable(), "{err}");
    assert!(!dir.exists(), "nothing published");
    assert_nothing_left(&exec).await;
    drop(held);
    assert_eq!(one.free(), 1);
}
