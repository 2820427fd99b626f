//! The sandbox, as pure functions: the engine objects a job runs in, built from its
//! [`RunSpec`] without talking to the engine, so every field can be checked in unit tests.
//!
//! A job gets a container of its own and an outputs volume of its own, all labelled
//! `lilypad.executor=<instance>` (the job's container also `lilypad.job=<job>`):
//! - an outputs volume: a tmpfs of `outputs_bytes` (and `outputs_files` inodes), mode 1777,
//!   fresh and empty, handed to exactly one job (see `executor/pool.rs`);
//! - a holder (see `holder.rs`), which keeps that volume mounted until it is copied out; one
//!   holder holds a batch of such volumes, each at `/o<i>` ([`holder_path`]), prepared ahead
//!   of the jobs (`lilypad.job=pool` on the batch's holder and volumes);
//! - the job's container: no network (unless allowed: then the executor's own bridge, with no
//!   route to the host or private ranges), a non-root user, read-only root
//!   filesystem, all capabilities dropped, `no-new-privileges`, memory without swap, CPU,
//!   pids and open-file limits, the outputs volume at `/outputs`, a small tmpfs at `/tmp`,
//!   the inputs read-only at `/inputs`, and no log driver (the executor reads stdout/stderr
//!   live through an attach, capped; the engine keeps no log file that could fill its disk).

use std::collections::HashMap;
use std::path::Component;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, HostConfigLogConfig, Mount, MountType,
    MountVolumeOptions, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};

use crate::error::ExecError;
use crate::spec::{RunSpec, DEFAULT_USER, INPUTS_PATH, OUTPUTS_PATH};

/// Label holding the job id, on everything created for a job.
pub const LABEL_JOB: &str = "lilypad.job";
/// Label holding the executor instance (see [`crate::ExecutorConfig::instance`]).
pub const LABEL_EXECUTOR: &str = "lilypad.executor";
/// Label saying what an object is for: `job`, `holder` or `outputs`.
pub const LABEL_ROLE: &str = "lilypad.role";

/// Smallest memory limit the engine accepts (6 MiB).
pub const MIN_MEMORY: u64 = 6 << 20;
/// Memory limit of the holder container (it only sleeps).
const HOLDER_MEMORY: i64 = 8 << 20;

/// Labels for one object of a job.
pub fn labels(job: &str, instance: &str, role: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_JOB.to_string(), job.to_string()),
        (LABEL_EXECUTOR.to_string(), instance.to_string()),
        (LABEL_ROLE.to_string(), role.to_string()),
    ])
}

/// Checks a job id and spec before anything is created. Every problem is
/// [`ExecError::BadSpec`] (fatal).
pub fn validate(job: &str, spec: &RunSpec) -> Result<(), ExecError> {
    let bad = |reason: String| {
        Err(ExecError::BadSpec {
            job: job.to_string(),
            reason,
        })
    };
    if job.is_empty() || job.len() > 200 || job.chars().any(char::is_control) {
        return bad("the job id must be 1 to 200 printable characters".into());
    }
    if spec.image.trim().is_empty()
        || spec
            .image
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return bad(format!("invalid image reference {:?}", spec.image));
    }
    let nul = |s: &str| s.contains('\0');
    if spec.cmd.iter().any(|s| nul(s)) || spec.entrypoint.iter().flatten().any(|s| nul(s)) {
        return bad("the command contains a NUL byte".into());
    }
    if spec.entrypoint.as_ref().is_some_and(|e| e.is_empty()) {
        return bad("an entrypoint override must not be empty (use None for the image's)".into());
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || nul(k) || nul(v) {
            return bad(format!("invalid environment variable name {k:?}"));
        }
    }
    if let Some(w) = &spec.workdir {
        if !w.starts_with('/') || nul(w) {
            return bad(format!(
                "the working directory must be an absolute path, not {w:?}"
            ));
        }
    }
    if let Some(u) = &spec.user {
        if u.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad(format!("invalid user {u:?}"));
        }
    }
    if let Some(d) = &spec.inputs_dir {
        if !d.is_absolute() || d.components().any(|c| matches!(c, Component::ParentDir)) {
            return bad(format!(
                "the inputs folder must be an absolute path without '..': {}",
                d.display()
            ));
        }
        if d.to_str()
            .is_none_or(|s| s.contains(',') || s.contains('\0'))
        {
            return bad(format!(
                "the inputs folder path is not usable as a mount source: {}",
                d.display()
            ));
        }
    }
    let l = &spec.limits;
    let fits = |v: u64| i64::try_from(v).is_ok();
    if l.memory_bytes < MIN_MEMORY || !fits(l.memory_bytes) {
        return bad(format!(
            "memory limit {} is below the engine's minimum of {MIN_MEMORY} bytes or too large",
            l.memory_bytes
        ));
    }
    if l.nano_cpus < 1_000_000 || !fits(l.nano_cpus) {
        return bad(format!(
            "CPU limit {} nano-CPUs is below 0.001 CPU or too large",
            l.nano_cpus
        ));
    }
    if l.pids == 0 || l.nofile < 16 {
        return bad("pids must be at least 1 and nofile at least 16".into());
    }
    if l.wall_time.is_zero() {
        return bad("the wall-time limit must be more than zero".into());
    }
    if l.outputs_bytes < 4096
        || l.outputs_files == 0
        || l.tmp_bytes < 4096
        || !fits(l.outputs_bytes)
        || !fits(l.tmp_bytes)
    {
        return bad(
            "outputs_bytes and tmp_bytes must be at least 4096 and outputs_files at least 1".into(),
        );
    }
    if let Some(g) = &spec.gpus {
        if g.count == Some(0) {
            return bad("a GPU request for 0 GPUs: leave gpus None instead".into());
        }
        if g.count.is_some() && !g.device_ids.is_empty() {
            return bad("a GPU request gives either a count or device ids, not both".into());
        }
        if g.device_ids.iter().any(|d| d.is_empty() || d.contains(',')) {
            return bad("invalid GPU device id".into());
        }
    }
    Ok(())
}

/// The outputs volume: a tmpfs the job cannot write more than `outputs_bytes` into.
pub fn outputs_volume(
    job: &str,
    instance: &str,
    name: &str,
    spec: &RunSpec,
) -> VolumeCreateRequest {
    outputs_volume_sized(job, instance, name, spec.limits.outputs_bytes, spec.limits.outputs_files)
}

/// [`outputs_volume`] for a job of `outputs_bytes` and `outputs_files` (a pooled volume is
/// made before its job is known).
pub fn outputs_volume_sized(
    job: &str,
    instance: &str,
    name: &str,
    outputs_bytes: u64,
    outputs_files: u32,
) -> VolumeCreateRequest {
    let l = crate::spec::Limits { outputs_bytes, outputs_files, ..Default::default() };
    VolumeCreateRequest {
        name: Some(name.to_string()),
        driver: Some("local".into()),
        driver_opts: Some(HashMap::from([
            ("type".to_string(), "tmpfs".to_string()),
            ("device".to_string(), "tmpfs".to_string()),
            (
                "o".to_string(),
                // +1: the root folder.
                format!(
                    "size={},nr_inodes={},mode=1777,nosuid,nodev",
                    l.outputs_bytes,
                    u64::from(l.outputs_files) + 1
                ),
            ),
        ])),
        labels: Some(labels(job, instance, "outputs")),
        ..Default::default()
    }
}

fn outputs_mount(volume: &str) -> Mount {
    Mount {
        target: Some(OUTPUTS_PATH.to_string()),
        source: Some(volume.to_string()),
        typ: Some(MountType::VOLUME),
        read_only: Some(false),
        volume_options: Some(MountVolumeOptions {
            no_copy: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn locked_down(host: HostConfig) -> HostConfig {
    HostConfig {
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: None,
        security_opt: Some(vec!["no-new-privileges".into()]),
        privileged: Some(false),
        publish_all_ports: Some(false),
        ipc_mode: Some("private".into()),
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        auto_remove: Some(false),
        oom_kill_disable: Some(false),
        ..host
    }
}

/// The job's container (see the module docs for what each setting is for).
/// `spec` must have passed [`validate`].
pub fn job_container(
    job: &str,
    instance: &str,
    spec: &RunSpec,
    outputs_volume: &str,
) -> ContainerCreateBody {
    let l = &spec.limits;
    let mut mounts = vec![outputs_mount(outputs_volume)];
    if let Some(dir) = &spec.inputs_dir {
        mounts.push(Mount {
            target: Some(INPUTS_PATH.to_string()),
            source: Some(dir.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let device_requests = spec.gpus.as_ref().map(|g| {
        vec![DeviceRequest {
            driver: Some("nvidia".into()),
            count: if g.device_ids.is_empty() {
                Some(g.count.map_or(-1, i64::from))
            } else {
                None
            },
            device_ids: if g.device_ids.is_empty() {
                None
            } else {
                Some(g.device_ids.clone())
            },
            // compute and nvidia-smi only: no graphics, video or display driver libraries
            capabilities: Some(vec![vec!["gpu".into(), "compute".into(), "utility".into()]]),
            options: None,
        }]
    });
    let memory = i64::try_from(l.memory_bytes).unwrap_or(i64::MAX);
    let host = locked_down(HostConfig {
        // never Docker's default bridge: the executor's own, firewalled (executor/network.rs)
        network_mode: Some(if spec.network { crate::job_network_name(instance) } else { "none".into() }),
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some(i64::try_from(l.nano_cpus).unwrap_or(i64::MAX)),
        pids_limit: Some(i64::from(l.pids)),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nofile".into()),
            soft: Some(i64::from(l.nofile)),
            hard: Some(i64::from(l.nofile)),
        }]),
        mounts: Some(mounts),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_string(),
            format!("rw,nosuid,nodev,size={},mode=1777", l.tmp_bytes),
        )])),
        shm_size: Some(i64::try_from(l.tmp_bytes).unwrap_or(i64::MAX)),
        device_requests,
        ..Default::default()
    });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: if spec.cmd.is_empty() {
            None
        } else {
            Some(spec.cmd.clone())
        },
        env: Some(container_env(spec)),
        working_dir: spec.workdir.clone(),
        user: Some(
            spec.user
                .clone()
                .unwrap_or_else(|| DEFAULT_USER.to_string()),
        ),
        labels: Some(labels(job, instance, "job")),
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(false),
        tty: Some(false),
        network_disabled: Some(!spec.network),
        host_config: Some(host),
        ..Default::default()
    }
}

/// Where a holder of several volumes keeps the `i`-th mounted (the engine's copy-out path).
pub fn holder_path(i: usize) -> String {
    format!("/o{i}")
}

/// The holder container: the holder image, the outputs volume, nothing else.
pub fn holder_container(
    job: &str,
    instance: &str,
    image: &str,
    outputs_volume: &str,
) -> ContainerCreateBody {
    let mut c = holder_of(job, instance, image, &[outputs_volume.to_string()]);
    if let Some(m) = c.host_config.as_mut().and_then(|h| h.mounts.as_mut()) {
        m[0].target = Some(OUTPUTS_PATH.to_string());
    }
    c
}

/// A holder of several outputs volumes, the `i`-th at [`holder_path`]`(i)`: the holder image,
/// the volumes, nothing else.
pub fn holder_of(
    job: &str,
    instance: &str,
    image: &str,
    volumes: &[String],
) -> ContainerCreateBody {
    let mounts = volumes
        .iter()
        .enumerate()
        .map(|(i, v)| Mount { target: Some(holder_path(i)), ..outputs_mount(v) })
        .collect();
    ContainerCreateBody {
        image: Some(image.to_string()),
        user: Some(DEFAULT_USER.to_string()),
        labels: Some(labels(job, instance, "holder")),
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        tty: Some(false),
        network_disabled: Some(true),
        host_config: Some(locked_down(HostConfig {
            network_mode: Some("none".into()),
            memory: Some(HOLDER_MEMORY),
            memory_swap: Some(HOLDER_MEMORY),
            // 0.1 CPU: it only sleeps, but its start (runc init) runs in this cgroup too; at
            // 0.01 CPU the start alone took a second.
            nano_cpus: Some(100_000_000),
            pids_limit: Some(4),
            mounts: Some(mounts),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A name for an engine object of a job: `lilypad-<kind>-<job, sanitized>-<unique>`.
pub fn object_name(kind: &str, job: &str, unique: &str) -> String {
    let clean: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    format!("lilypad-{kind}-{clean}-{unique}")
}

/// The job's environment, and for a GPU job what the NVIDIA runtime reads, set here last so
/// that neither the module nor its image chooses them: driver capabilities `compute,utility`
/// (an image's `NVIDIA_DRIVER_CAPABILITIES=all` would mount graphics and display libraries),
/// and the devices assigned to this job (an image's `NVIDIA_VISIBLE_DEVICES=all` would
/// otherwise widen the request).
fn container_env(spec: &RunSpec) -> Vec<String> {
    let mut env: Vec<String> = spec
        .env
        .iter()
        .filter(|(k, _)| !k.starts_with("NVIDIA_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    match &spec.gpus {
        Some(g) => {
            env.push("NVIDIA_DRIVER_CAPABILITIES=compute,utility".into());
            if !g.device_ids.is_empty() {
                env.push(format!("NVIDIA_VISIBLE_DEVICES={}", g.device_ids.join(",")));
            }
        }
        // where nvidia is the default runtime, a CUDA image's `NVIDIA_VISIBLE_DEVICES=all`
        // would hand a CPU job every GPU
        None => env.push("NVIDIA_VISIBLE_DEVICES=void".into()),
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{GpuRequest, Limits};
    use std::path::PathBuf;
    use std::time::Duration;

    fn spec() -> RunSpec {
        RunSpec {
            image: "lilypad/job:1".into(),
            entrypoint: Some(vec!["/bin/busybox".into(), "sh".into(), "-c".into()]),
            cmd: vec!["echo hi".into()],
            env: vec![("A".into(), "1".into()), ("B".into(), "x=y".into())],
            workdir: Some("/work".into()),
            inputs_dir: Some(PathBuf::from("/srv/jobs/42/inputs")),
            limits: Limits {
                memory_bytes: 256 << 20,
                nano_cpus: 500_000_000,
                pids: 64,
                nofile: 256,
                wall_time: Duration::from_secs(30),
                outputs_bytes: 10 << 20,
                outputs_files: 100,
                tmp_bytes: 1 << 20,
                log_bytes: 1024,
            },
            network: false,
            gpus: None,
            user: None,
        }
    }

    #[test]
    fn job_container_is_locked_down() {
        let c = job_container("job-42", "inst", &spec(), "vol-1");
        assert_eq!(c.image.as_deref(), Some("lilypad/job:1"));
        assert_eq!(
            c.entrypoint,
            Some(vec!["/bin/busybox".into(), "sh".into(), "-c".into()])
        );
        assert_eq!(c.cmd, Some(vec!["echo hi".into()]));
        assert_eq!(c.env, Some(vec!["A=1".into(), "B=x=y".into(), "NVIDIA_VISIBLE_DEVICES=void".into()]));
        assert_eq!(c.working_dir.as_deref(), Some("/work"));
        assert_eq!(c.user.as_deref(), Some("65534:65534"));
        assert_eq!(c.network_disabled, Some(true));
        assert_eq!(c.tty, Some(false));
        assert_eq!(c.open_stdin, Some(false));
        assert_eq!(c.attach_stdout, Some(true));
        assert_eq!(c.attach_stderr, Some(true));
        let labels = c.labels.unwrap();
        assert_eq!(labels[LABEL_JOB], "job-42");
        assert_eq!(labels[LABEL_EXECUTOR], "inst");
        assert_eq!(labels[LABEL_ROLE], "job");

        let h = c.host_config.unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.cap_drop, Some(vec!["ALL".into()]));
        assert_eq!(h.cap_add, None);
        assert_eq!(h.security_opt, Some(vec!["no-new-privileges".into()]));
        assert_eq!(h.privileged, Some(false));
        assert_eq!(h.memory, Some(256 << 20));
        assert_eq!(h.memory_swap, Some(256 << 20), "swap = memory: no swap");
        assert_eq!(h.nano_cpus, Some(500_000_000));
        assert_eq!(h.pids_limit, Some(64));
        let u = &h.ulimits.as_ref().unwrap()[0];
        assert_eq!(
            (u.name.as_deref(), u.soft, u.hard),
            (Some("nofile"), Some(256), Some(256))
        );
        assert_eq!(h.log_config.as_ref().unwrap().typ.as_deref(), Some("none"));
        assert_eq!(h.auto_remove, Some(false));
        assert_eq!(
            h.restart_policy.as_ref().unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        assert_eq!(h.ipc_mode.as_deref(), Some("private"));
        assert_eq!(h.pid_mode, None);
        assert_eq!(h.userns_mode, None);
        assert_eq!(h.device_requests, None);
        assert_eq!(h.devices, None);
        assert_eq!(h.binds, None, "host paths only through the explicit mounts");
        assert_eq!(h.volumes_from, None);
        assert_eq!(h.shm_size, Some(1 << 20));
        let tmp = h.tmpfs.as_ref().unwrap();
        assert_eq!(tmp.len(), 1);
        assert_eq!(tmp["/tmp"], "rw,nosuid,nodev,size=1048576,mode=1777");

        let mounts = h.mounts.unwrap();
        assert_eq!(mounts.len(), 2);
        let out = &mounts[0];
        assert_eq!(out.typ, Some(MountType::VOLUME));
        assert_eq!(out.source.as_deref(), Some("vol-1"));
        assert_eq!(out.target.as_deref(), Some("/outputs"));
        assert_eq!(out.read_only, Some(false));
        assert_eq!(out.volume_options.as_ref().unwrap().no_copy, Some(true));
        let inp = &mounts[1];
        assert_eq!(inp.typ, Some(MountType::BIND));
        assert_eq!(inp.source.as_deref(), Some("/srv/jobs/42/inputs"));
        assert_eq!(inp.target.as_deref(), Some("/inputs"));
        assert_eq!(inp.read_only, Some(true));
    }

    #[test]
    fn defaults_network_user_and_no_inputs() {
        let mut s = spec();
        s.network = true;
        s.user = Some("1000:1000".into());
        s.inputs_dir = None;
        s.cmd.clear();
        s.entrypoint = None;
        let c = job_container("j", "i", &s, "v");
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.cmd, None, "the image's CMD");
        assert_eq!(c.entrypoint, None, "the image's ENTRYPOINT");
        assert_eq!(c.network_disabled, Some(false));
        let h = c.host_config.unwrap();
        assert_eq!(h.network_mode, Some(crate::job_network_name("i")));
        assert_ne!(h.network_mode.as_deref(), Some("bridge"), "never Docker's default bridge");
        assert_eq!(h.mounts.unwrap().len(), 1, "outputs only");
    }

    #[test]
    fn gpu_jobs_get_compute_utility_and_only_their_assigned_devices() {
        let mut s = spec();
        s.env.push(("NVIDIA_DRIVER_CAPABILITIES".into(), "all".into()));
        s.gpus = Some(GpuRequest { count: None, device_ids: vec!["2".into(), "3".into()] });
        let env = job_container("j", "i", &s, "v").env.unwrap();
        assert!(env.contains(&"NVIDIA_DRIVER_CAPABILITIES=compute,utility".to_string()), "{env:?}");
        assert!(env.contains(&"NVIDIA_VISIBLE_DEVICES=2,3".to_string()), "{env:?}");
        assert!(!env.iter().any(|e| e.ends_with("=all")), "nothing widens the request: {env:?}");
        s.gpus = None;
        let env = job_container("j", "i", &s, "v").env.unwrap();
        assert!(env.contains(&"NVIDIA_VISIBLE_DEVICES=void".to_string()), "no GPU: no devices, whatever the image says: {env:?}");
    }

    #[test]
    fn gpu_device_requests() {
        let mut s = spec();
        s.gpus = Some(GpuRequest {
            count: Some(2),
            device_ids: vec![],
        });
        let h = job_container("j", "i", &s, "v").host_config.unwrap();
        let d = &h.device_requests.unwrap()[0];
        assert_eq!(d.driver.as_deref(), Some("nvidia"));
        assert_eq!(d.count, Some(2));
        assert_eq!(d.device_ids, None);
        assert_eq!(d.capabilities, Some(vec![vec!["gpu".to_string(), "compute".into(), "utility".into()]]));

        s.gpus = Some(GpuRequest {
            count: None,
            device_ids: vec![],
        });
        let h = job_container("j", "i", &s, "v").host_config.unwrap();
        assert_eq!(h.device_requests.unwrap()[0].count, Some(-1), "all GPUs");

        s.gpus = Some(GpuRequest {
            count: None,
            device_ids: vec!["0".into(), "GPU-abc".into()],
        });
        let h = job_container("j", "i", &s, "v").host_config.unwrap();
        let d = &h.device_requests.unwrap()[0];
        assert_eq!(d.count, None);
        assert_eq!(
            d.device_ids,
            Some(vec!["0".to_string(), "GPU-abc".to_string()])
        );
        assert_eq!(d.capabilities, Some(vec![vec!["gpu".to_string(), "compute".into(), "utility".into()]]));
        // The rest of the sandbox is unchanged by a GPU.
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.cap_drop, Some(vec!["ALL".into()]));
    }

    #[test]
    fn outputs_volume_is_a_capped_tmpfs() {
        let v = outputs_volume("j", "i", "vol", &spec());
        assert_eq!(v.name.as_deref(), Some("vol"));
        assert_eq!(v.driver.as_deref(), Some("local"));
        let o = v.driver_opts.unwrap();
        assert_eq!(o["type"], "tmpfs");
        assert_eq!(o["device"], "tmpfs");
        assert_eq!(o["o"], "size=10485760,nr_inodes=101,mode=1777,nosuid,nodev");
        assert_eq!(v.labels.unwrap()[LABEL_ROLE], "outputs");
    }

    #[test]
    fn holder_is_locked_down() {
        let c = holder_container("j", "i", "lilypad/outputs-holder:x", "vol");
        assert_eq!(c.user.as_deref(), Some("65534:65534"));
        assert_eq!(c.entrypoint, None);
        assert_eq!(c.labels.as_ref().unwrap()[LABEL_ROLE], "holder");
        let h = c.host_config.unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.cap_drop, Some(vec!["ALL".into()]));
        assert_eq!(h.security_opt, Some(vec!["no-new-privileges".into()]));
        assert_eq!(h.pids_limit, Some(4));
        assert_eq!(h.mounts.unwrap()[0].target.as_deref(), Some("/outputs"));
        let c = holder_of("pool", "i", "lilypad/outputs-holder:x", &["a".into(), "b".into()]);
        let m = c.host_config.unwrap().mounts.unwrap();
        let got: Vec<_> = m.iter().map(|m| (m.source.as_deref(), m.target.as_deref())).collect();
        assert_eq!(got, [(Some("a"), Some("/o0")), (Some("b"), Some("/o1"))]);
        assert!(m.iter().all(|m| m.typ == Some(MountType::VOLUME) && m.read_only == Some(false)));
    }

    #[test]
    fn validation() {
        assert!(validate("job-1", &spec()).is_ok());
        let bad = |f: &dyn Fn(&mut RunSpec)| {
            let mut s = spec();
            f(&mut s);
            match validate("job-1", &s) {
                Err(ExecError::BadSpec { job, .. }) => assert_eq!(job, "job-1"),
                other => panic!("expected BadSpec, got {other:?}"),
            }
        };
        bad(&|s| s.image = String::new());
        bad(&|s| s.image = "a b".into());
        bad(&|s| s.env.push(("A=B".into(), "1".into())));
        bad(&|s| s.env.push((String::new(), "1".into())));
        bad(&|s| s.cmd.push("a\0b".into()));
        bad(&|s| s.entrypoint = Some(vec![]));
        bad(&|s| s.workdir = Some("relative".into()));
        bad(&|s| s.user = Some(String::new()));
        bad(&|s| s.inputs_dir = Some("relative/dir".into()));
        bad(&|s| s.inputs_dir = Some("/a/../etc".into()));
        bad(&|s| s.inputs_dir = Some("/a,b".into()));
        bad(&|s| s.limits.memory_bytes = 1 << 20);
        bad(&|s| s.limits.memory_bytes = u64::MAX);
        bad(&|s| s.limits.nano_cpus = 0);
        bad(&|s| s.limits.pids = 0);
        bad(&|s| s.limits.wall_time = Duration::ZERO);
        bad(&|s| s.limits.outputs_bytes = 0);
        bad(&|s| {
            s.gpus = Some(GpuRequest {
                count: Some(0),
                device_ids: vec![],
            })
        });
        bad(&|s| {
            s.gpus = Some(GpuRequest {
                count: Some(1),
                device_ids: vec!["0".into()],
            })
        });
        assert!(matches!(
            validate("", &spec()),
            Err(ExecError::BadSpec { .. })
        ));
        assert!(matches!(
            validate("a\nb", &spec()),
            Err(ExecError::BadSpec { .. })
        ));
    }

    #[test]
    fn object_names_are_engine_safe() {
        assert_eq!(
            object_name("job", "0xAB/c d", "7f"),
            "lilypad-job-0xAB-c-d-7f"
        );
        let long = "x".repeat(300);
        assert!(object_name("job", &long, "1").len() < 70);
    }
}
