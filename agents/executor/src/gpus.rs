//! Which GPUs each job gets: a per-host allocator, so that jobs asking for a number of GPUs get
//! devices of their own (not device 0 for every job, as the engine's own placement gives).
//!
//! A [`GpuLease`] holds its devices until it is dropped (the run ended, however it ended).
//! Every [`crate::Executor`] of a process shares [`GpuAllocator::host`] unless its
//! [`crate::ExecutorConfig::gpus`] names another, so a provider and a mediator in one process
//! never get the same device at once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

/// A GPU request that cannot be met.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// More GPUs than the host has, or a device it does not have. Fatal.
    #[error("asks for {wanted}, but this host has {have}")]
    NotOnHost { wanted: String, have: String },
    /// The devices exist but other jobs hold them now. Retryable.
    #[error("asks for {wanted}, but only {free} of this host's {total} GPUs are free now")]
    Busy { wanted: String, free: usize, total: usize },
}

impl GpuError {
    /// Whether asking again later may succeed (devices held by other jobs).
    pub fn is_retryable(&self) -> bool {
        matches!(self, GpuError::Busy { .. })
    }
}

/// The GPUs of a host and which are held by jobs.
#[derive(Debug)]
pub struct GpuAllocator {
    devices: Vec<String>,
    busy: Mutex<BTreeSet<String>>,
}

impl GpuAllocator {
    /// An allocator over `devices` (indices or UUIDs, as `nvidia-smi -L` shows them), handed
    /// out in this order.
    pub fn new(devices: Vec<String>) -> Arc<Self> {
        let mut seen = BTreeSet::new();
        let devices = devices.into_iter().filter(|d| seen.insert(d.clone())).collect();
        Arc::new(GpuAllocator { devices, busy: Mutex::new(BTreeSet::new()) })
    }

    /// The process-wide allocator of this host's GPUs, as `nvidia-smi` lists them (none when
    /// it is missing or fails).
    pub fn host() -> Arc<Self> {
        static HOST: OnceLock<Arc<GpuAllocator>> = OnceLock::new();
        HOST.get_or_init(|| GpuAllocator::new(detect())).clone()
    }

    /// The devices this allocator hands out.
    pub fn devices(&self) -> &[String] {
        &self.devices
    }

    /// Devices not held by a job now.
    pub fn free(&self) -> usize {
        let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        self.devices.iter().filter(|d| !busy.contains(*d)).count()
    }

    /// Reserves GPUs for one job: `device_ids` when given (each must be on this host and free),
    /// else `count` free devices in this allocator's order (all of them when `None`).
    pub fn acquire(self: &Arc<Self>, count: Option<u32>, device_ids: &[String]) -> Result<GpuLease, GpuError> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let total = self.devices.len();
        let have = || match total {
            0 => "no GPU".to_string(),
            1 => format!("1 GPU ({})", self.devices.join(", ")),
            n => format!("{n} GPUs ({})", self.devices.join(", ")),
        };
        let free: Vec<&String> = self.devices.iter().filter(|d| !busy.contains(*d)).collect();
        let picked: Vec<String> = if device_ids.is_empty() {
            let wanted = count.map_or(total, |c| c as usize);
            let what = || match count {
                Some(c) => format!("{c} GPU{}", if c == 1 { "" } else { "s" }),
                None => "all GPUs".to_string(),
            };
            if wanted == 0 || wanted > total {
                return Err(GpuError::NotOnHost { wanted: what(), have: have() });
            }
            if wanted > free.len() {
                return Err(GpuError::Busy { wanted: what(), free: free.len(), total });
            }
            free.into_iter().take(wanted).cloned().collect()
        } else {
            let what = || format!("GPUs {}", device_ids.join(", "));
            if let Some(d) = device_ids.iter().find(|d| !self.devices.contains(d)) {
                return Err(GpuError::NotOnHost { wanted: format!("GPU {d}"), have: have() });
            }
            if device_ids.iter().any(|d| busy.contains(d)) {
                return Err(GpuError::Busy { wanted: what(), free: free.len(), total });
            }
            let mut seen = BTreeSet::new();
            device_ids.iter().filter(|d| seen.insert(*d)).cloned().collect()
        };
        busy.extend(picked.iter().cloned());
        Ok(GpuLease { allocator: self.clone(), devices: picked })
    }
}

/// GPUs held by one job; released when dropped.
#[derive(Debug)]
pub struct GpuLease {
    allocator: Arc<GpuAllocator>,
    devices: Vec<String>,
}

impl GpuLease {
    /// The job's devices (for `NVIDIA_VISIBLE_DEVICES` and the device request).
    pub fn devices(&self) -> &[String] {
        &self.devices
    }
}

impl Drop for GpuLease {
    fn drop(&mut self) {
        let mut busy = self.allocator.busy.lock().unwrap_or_else(|p| p.into_inner());
        for d in &self.devices {
            busy.remove(d);
        }
    }
}

/// This host's GPUs by index, from `nvidia-smi --query-gpu=index` (none without it).
fn detect() -> Vec<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=index", "--format=csv,noheader"])
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => parse_indices(&String::from_utf8_lossy(&o.stdout)),
        _ => Vec::new(),
    }
}

fn parse_indices(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit())).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn four() -> Arc<GpuAllocator> {
        GpuAllocator::new(["0", "1", "2", "3"].map(String::from).to_vec())
    }

    #[test]
    fn jobs_get_devices_of_their_own_not_all_device_0() {
        let gpus = four();
        let a = gpus.acquire(Some(1), &[]).unwrap();
        let b = gpus.acquire(Some(1), &[]).unwrap();
        let c = gpus.acquire(Some(2), &[]).unwrap();
        assert_eq!(a.devices(), ["0"]);
        assert_eq!(b.devices(), ["1"]);
        assert_eq!(c.devices(), ["2", "3"]);
        assert_eq!(gpus.free(), 0);
    }

    #[test]
    fn a_released_device_is_handed_out_again() {
        let gpus = four();
        let a = gpus.acquire(Some(1), &[]).unwrap();
        let b = gpus.acquire(Some(1), &[]).unwrap();
        drop(a);
        let c = gpus.acquire(Some(1), &[]).unwrap();
        assert_eq!(c.devices(), ["0"]);
        assert_eq!(b.devices(), ["1"]);
        drop((b, c));
        assert_eq!(gpus.free(), 4);
    }

    #[test]
    fn busy_devices_are_retryable_and_missing_ones_fatal() {
        let gpus = four();
        let _three = gpus.acquire(Some(3), &[]).unwrap();
        let err = gpus.acquire(Some(2), &[]).unwrap_err();
        assert_eq!(err, GpuError::Busy { wanted: "2 GPUs".into(), free: 1, total: 4 });
        assert!(err.is_retryable());
        let err = gpus.acquire(Some(5), &[]).unwrap_err();
        assert!(!err.is_retryable() && err.to_string().contains("4 GPUs"), "{err}");
        let err = GpuAllocator::new(Vec::new()).acquire(Some(1), &[]).unwrap_err();
        assert!(err.to_string().contains("no GPU"), "{err}");
        assert!(gpus.acquire(Some(0), &[]).is_err(), "a GPU request of none is a mistake");
    }

    #[test]
    fn all_means_every_device_and_waits_for_them() {
        let gpus = four();
        let one = gpus.acquire(Some(1), &[]).unwrap();
        assert!(gpus.acquire(None, &[]).unwrap_err().is_retryable());
        drop(one);
        assert_eq!(gpus.acquire(None, &[]).unwrap().devices(), ["0", "1", "2", "3"]);
    }

    #[test]
    fn named_devices_must_be_on_the_host_and_free() {
        let gpus = four();
        let two = gpus.acquire(None, &["2".into()]).unwrap();
        assert_eq!(two.devices(), ["2"]);
        assert!(gpus.acquire(None, &["2".into()]).unwrap_err().is_retryable());
        let err = gpus.acquire(None, &["7".into()]).unwrap_err();
        assert!(!err.is_retryable() && err.to_string().contains("GPU 7"), "{err}");
        // a count after that skips the named one
        assert_eq!(gpus.acquire(Some(3), &[]).unwrap().devices(), ["0", "1", "3"]);
    }

    #[test]
    fn concurrent_jobs_never_share_a_device() {
        let gpus = GpuAllocator::new((0..8).map(|i| i.to_string()).collect());
        let held = Arc::new(Mutex::new(BTreeSet::new()));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let (gpus, held) = (gpus.clone(), held.clone());
                s.spawn(move || {
                    for _ in 0..200 {
                        if let Ok(lease) = gpus.acquire(Some(2), &[]) {
                            for d in lease.devices() {
                                assert!(held.lock().unwrap().insert(d.clone()), "device {d} handed out twice");
                            }
                            std::thread::yield_now();
                            for d in lease.devices() {
                                held.lock().unwrap().remove(d);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(gpus.free(), 8);
    }

    #[test]
    fn nvidia_smi_indices_are_parsed() {
        assert_eq!(parse_indices("0\n1\n\n 2 \nNo devices were found\n"), ["0", "1", "2"]);
    }
}
