//! Building a module's image: `build.commands` in a temporary copy of the folder, then
//! `docker build` of that copy.
//!
//! **The build commands run on the host**, as the user running the agent, with no sandbox:
//! a provider must only build modules it trusts (e.g. ones it has reviewed, or from an allow
//! list). Images shipped as archives pinned by CID (`docker load`) are the safer path this
//! is meant to give way to.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lilypad_executor::Executor;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tracing::{debug, info};

use crate::error::BuildError;
use crate::Module;

/// Bytes kept of each build command's stdout and stderr (the end of them), for errors.
const OUTPUT_TAIL: usize = 4096;

/// `PATH` for build commands when the host has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How [`build_image_with`] builds.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Build even when the engine has the tag already.
    pub force: bool,
}

/// What [`build_image_with`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// [`Module::image_tag`].
    pub tag: String,
    /// The engine's image id: record it and start containers by it (see [`crate::ModuleImage`]).
    pub id: String,
    /// The engine had the tag already: nothing was run or built.
    pub reused: bool,
}

impl BuiltImage {
    /// The tag and id to record for the module.
    pub fn image(&self) -> crate::ModuleImage {
        crate::ModuleImage { tag: self.tag.clone(), id: self.id.clone() }
    }
}

/// Builds the module's image unless the engine has its tag already, and returns the tag
/// ([`Module::image_tag`]). See [`build_image_with`].
pub async fn build_image(module: &Module, executor: &Executor) -> Result<String, BuildError> {
    Ok(build_image_with(module, executor, &BuildOptions::default())
        .await?
        .tag)
}

/// Builds the module's image:
///
/// 1. If the engine has [`Module::image_tag`] already (and not `force`), stops there: the tag
///    names the content hash, so the image is of these bytes.
/// 2. Copies the module folder to a temporary folder and checks that the copy still has the
///    module's CID (the module folder itself is never written to).
/// 3. Runs `build.commands` there, one after the other, each an argv list run without a shell,
///    with the copy as working directory, stdin closed, and a clean environment (`PATH` and
///    `HOME` of the host, `LC_ALL=C`, `TZ=UTC`, `SOURCE_DATE_EPOCH=0`). All of them together
///    have `build.timeoutSeconds`; then the command's whole process group is killed.
/// 4. `docker build`s the copy and tags it.
///
/// **The commands run on this host, unsandboxed**: build only modules you trust.
pub async fn build_image_with(
    module: &Module,
    executor: &Executor,
    options: &BuildOptions,
) -> Result<BuiltImage, BuildError> {
    if module.engine() != crate::EngineKind::Docker {
        return Err(BuildError::NotDocker {
            module: module.reference().to_string(),
        });
    }
    let tag = module.image_tag();
    let docker_err = |source| BuildError::Docker {
        tag: tag.clone(),
        source: Box::new(source),
    };
    if !options.force && executor.has_image(&tag).await.map_err(docker_err)? {
        let id = executor.image_id_of(&tag).await.map_err(docker_err)?;
        debug!(%tag, %id, "image present already");
        return Ok(BuiltImage { tag, id, reused: true });
    }
    let work = tempfile::Builder::new()
        .prefix("lilypad-build-")
        .tempdir()
        .map_err(|source| BuildError::Copy {
            path: std::env::temp_dir(),
            source,
        })?;
    let copy = work.path().join("module");
    {
        let (src, dst, expected) = (module.dir().to_path_buf(), copy.clone(), *module.cid());
        tokio::task::spawn_blocking(move || -> Result<(), BuildError> {
            copy_tree(&src, &dst)?;
            let found = lilypad_store::cid_of_path(&dst).map_err(|source| BuildError::Hash {
                dir: src.clone(),
                source: Box::new(source),
            })?;
            if found != expected {
                return Err(BuildError::ModuleChanged {
                    dir: src,
                    expected: expected.to_string(),
                    found: found.to_string(),
                });
            }
            Ok(())
        })
        .await
        .map_err(|e| BuildError::Copy {
            path: copy.clone(),
            source: std::io::Error::other(e),
        })??;
    }
    let build = &module.spec().build;
    let timeout = Duration::from_secs(u64::from(build.timeout_seconds));
    let deadline = tokio::time::Instant::now() + timeout;
    for argv in &build.commands {
        run_command(argv, &copy, deadline, timeout).await?;
    }
    let id = match executor.build_image(&copy, &tag).await {
        Ok(id) => id,
        Err(source) => return Err(explain_build_failure(executor, &copy, tag, source).await),
    };
    info!(module = %module.reference(), cid = %module.cid(), %tag, image = %id, "built module image");
    Ok(BuiltImage { tag, id, reused: false })
}

/// A failed `docker build`, explained: when the Dockerfile starts from an image the engine does
/// not have (nothing can be pulled), [`BuildError::BaseNotLocal`] says so and what to do.
async fn explain_build_failure(executor: &Executor, dir: &Path, tag: String, source: lilypad_executor::ExecError) -> BuildError {
    let dockerfile = std::fs::read_to_string(dir.join("Dockerfile")).unwrap_or_default();
    let mut missing = Vec::new();
    for base in base_images(&dockerfile) {
        if let Ok(false) = executor.has_image(&base).await {
            missing.push(base);
        }
    }
    if missing.is_empty() {
        BuildError::Docker { tag, source: Box::new(source) }
    } else {
        BuildError::BaseNotLocal { tag, bases: missing, source: Box::new(source) }
    }
}

/// The images a Dockerfile's `FROM` lines start from: not `scratch`, not an earlier stage
/// (`FROM x AS name`), flags such as `--platform=...` skipped.
fn base_images(dockerfile: &str) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    let mut bases = Vec::new();
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        let Some(image) = rest.first() else { continue };
        if !image.eq_ignore_ascii_case("scratch") && !stages.iter().any(|s| s.eq_ignore_ascii_case(image)) && !bases.iter().any(|b| b == image) {
            bases.push(image.to_string());
        }
        if let [_, as_, name, ..] = rest.as_slice() {
            if as_.eq_ignore_ascii_case("AS") {
                stages.push(name.to_string());
            }
        }
    }
    bases
}

/// Copies the folder `src` to `dst` (which must not exist): folders and regular files, with
/// their permission bits. A link or special file (the folder changed since it was loaded) is
/// refused.
fn copy_tree(src: &Path, dst: &Path) -> Result<(), BuildError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Copy { path, source }
    };
    fs::create_dir(dst).map_err(err(dst))?;
    let mut stack: Vec<(PathBuf, PathBuf)> = vec![(src.to_path_buf(), dst.to_path_buf())];
    while let Some((from, to)) = stack.pop() {
        for entry in fs::read_dir(&from).map_err(err(&from))? {
            let entry = entry.map_err(err(&from))?;
            let (path, target) = (entry.path(), to.join(entry.file_name()));
            let ft = entry.file_type().map_err(err(&path))?;
            if ft.is_dir() {
                fs::create_dir(&target).map_err(err(&target))?;
                stack.push((path, target));
            } else if ft.is_file() {
                // fs::copy copies the permission bits too.
                fs::copy(&path, &target).map_err(err(&path))?;
            } else {
                return Err(BuildError::Copy {
                    path,
                    source: std::io::Error::other(
                        "a link or special file appeared in the module since it was loaded",
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Shell-like rendering of an argv list, for messages.
fn show(argv: &[String]) -> String {
    format!("{argv:?}")
}

async fn run_command(
    argv: &[String],
    cwd: &Path,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<(), BuildError> {
    let command = show(argv);
    info!(%command, "running build command");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
        )
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("SOURCE_DATE_EPOCH", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    let mut child = cmd.spawn().map_err(|source| BuildError::CommandSpawn {
        command: command.clone(),
        source,
    })?;
    let pgid = child.id();
    let stdout = tokio::spawn(tail(child.stdout.take()));
    let stderr = tokio::spawn(tail(child.stderr.take()));
    let status = tokio::time::timeout_at(deadline, child.wait()).await;
    let timed_out = status.is_err();
    if timed_out {
        if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: killpg only sends a signal; the group is the one the child leads
            // (process_group(0)), still alive since the child has not been reaped.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
        let _ = child.kill().await;
    }
    let output = {
        let out = stdout.await.unwrap_or_default();
        let err = stderr.await.unwrap_or_default();
        let mut s = String::new();
        if !out.trim().is_empty() {
            s.push_str(&format!("[stdout]\n{}\n", out.trim_end()));
        }
        if !err.trim().is_empty() {
            s.push_str(&format!("[stderr]\n{}\n", err.trim_end()));
        }
        if s.is_empty() {
            s.push_str("(no output)");
        }
        s
    };
    match status {
        Err(_) => Err(BuildError::CommandTimedOut {
            command,
            timeout,
            output,
        }),
        Ok(Err(source)) => Err(BuildError::CommandSpawn { command, source }),
        Ok(Ok(st)) if !st.success() => Err(BuildError::CommandFailed {
            command,
            status: st.to_string(),
            output,
        }),
        Ok(Ok(_)) => {
            debug!(%command, %output, "build command done");
            Ok(())
        }
    }
}

/// Reads `r` to the end, keeping its last [`OUTPUT_TAIL`] bytes (as lossy UTF-8).
async fn tail<R: AsyncRead + Unpin>(r: Option<R>) -> String {
    let Some(mut r) = r else { return String::new() };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    let mut cut = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * OUTPUT_TAIL {
                    kept.drain(..kept.len() - OUTPUT_TAIL);
                    cut = true;
                }
            }
        }
    }
    if kept.len() > OUTPUT_TAIL {
        kept.drain(..kept.len() - OUTPUT_TAIL);
        cut = true;
    }
    let text = String::from_utf8_lossy(&kept).into_owned();
    if cut {
        format!("...{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadline(secs: u64) -> (tokio::time::Instant, Duration) {
        let d = Duration::from_secs(secs);
        (tokio::time::Instant::now() + d, d)
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn base_images_are_the_from_lines_less_scratch_and_earlier_stages() {
        assert!(base_images("FROM scratch\nCOPY app /app\n").is_empty());
        assert_eq!(base_images("FROM alpine\nRUN true\n"), vec!["alpine"]);
        let multi = "from --platform=linux/amd64 golang:1.22 AS build\nRUN go build\nFROM build AS again\nFROM scratch\nCOPY --from=build /app /app\n";
        assert_eq!(base_images(multi), vec!["golang:1.22"], "stages and scratch are not bases");
    }

    #[tokio::test]
    async fn commands_run_without_a_shell_in_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (dl, t) = deadline(30);
        // The `;` and `$(...)` are one literal argument to touch, not shell syntax.
        run_command(
            &argv(&["touch", "a; touch b $(touch c)"]),
            dir.path(),
            dl,
            t,
        )
        .await
        .unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["a; touch b $(touch c)"]);
    }

    #[tokio::test]
    async fn failures_timeouts_and_missing_tools() {
        let dir = tempfile::tempdir().unwrap();
        let (dl, t) = deadline(30);
        let e = run_command(
            &argv(&["sh", "-c", "echo oops >&2; exit 3"]),
            dir.path(),
            dl,
            t,
        )
        .await
        .unwrap_err();
        match &e {
            BuildError::CommandFailed { output, status, .. } => {
                assert!(output.contains("oops"), "{output}");
                assert!(status.contains('3'), "{status}");
            }
            other => panic!("{other:?}"),
        }
        let (dl, t) = deadline(1);
        let start = std::time::Instant::now();
        // The grandchild `sleep` holds the pipes: only killing the group ends this quickly.
        let e = run_command(
            &argv(&["sh", "-c", "echo started; sleep 60 & sleep 60"]),
            dir.path(),
            dl,
            t,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, BuildError::CommandTimedOut { .. }), "{e:?}");
        assert!(e.to_string().contains("started"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(20));
        let (dl, t) = deadline(30);
        let e = run_command(&argv(&["no-such-tool-xyz"]), dir.path(), dl, t)
            .await
            .unwrap_err();
        assert!(matches!(e, BuildError::CommandSpawn { .. }), "{e:?}");
        assert!(e.to_string().contains("installed"), "{e}");
    }

    #[tokio::test]
    async fn tail_keeps_the_end() {
        let data = vec![b'x'; 3 * OUTPUT_TAIL]
            .into_iter()
            .chain(b"END".iter().copied())
            .collect::<Vec<u8>>();
        let t = tail(Some(&data[..])).await;
        assert!(t.starts_with("...") && t.ends_with("END"));
        assert_eq!(t.len(), OUTPUT_TAIL + 3);
    }
}
