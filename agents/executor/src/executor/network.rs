//! The network of network-enabled jobs: a bridge of this executor's own, never Docker's
//! default one, kept off the host and off private address ranges by firewall rules.
//!
//! * The bridge ([`job_network_name`], interface [`bridge_interface`]) has inter-container
//!   traffic off (`enable_icc=false`) and masquerades to the internet as the default bridge
//!   does.
//! * Chain `LILYPAD-<hash>` (jumped to from `DOCKER-USER`, which Docker runs first in
//!   `FORWARD`) drops what the bridge sends to [`BLOCKED_RANGES`]: RFC 1918 networks, loopback,
//!   link-local (cloud metadata at 169.254.169.254), CGNAT, multicast and reserved ranges.
//! * Chain `LILYPAD-<hash>-IN` (jumped to from `INPUT`) drops what the bridge sends to the host
//!   itself, on any of its addresses: the bridge's gateway, other bridges, the LAN address.
//! * DNS keeps working: Docker's resolver inside the job's namespace forwards to the host's
//!   nameservers; those (read from `/etc/resolv.conf` and systemd-resolved's upstream file)
//!   are let through on port 53 only.
//!
//! The rules need root and `iptables` on the engine's host (the provider's). A network-enabled
//! job on a host where they cannot be set is refused ([`ExecError::Firewall`]), never run on an
//! open network. Rules and bridge are made on the first network-enabled run and checked before
//! each; [`Executor::remove_job_network`] takes them away.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::NetworkCreateRequest;
use tracing::{debug, info};

use super::Executor;
use crate::error::{status_of, ExecError, Subject};
use crate::sandbox::{LABEL_EXECUTOR, LABEL_ROLE};

/// IPv4 ranges a network-enabled job may not reach (besides the host, refused as a whole).
pub const BLOCKED_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// Files naming the host's nameservers (the second is systemd-resolved's upstream list, used
/// by Docker when the first names only its 127.0.0.53 stub).
const RESOLV_FILES: &[&str] = &["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"];

/// A short stable hash of the instance, for names with length limits (interfaces: 15 bytes).
fn instance_hash(instance: &str) -> String {
    // FNV-1a, 64 bits: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}

/// The Docker network of this executor instance's network-enabled jobs.
pub fn job_network_name(instance: &str) -> String {
    format!("lilypad-jobs-{}", instance_hash(instance))
}

/// The host interface of that network's bridge (`lpj` and 10 hex digits).
pub fn bridge_interface(instance: &str) -> String {
    format!("lpj{}", instance_hash(instance))
}

/// The iptables chains: (forwarded traffic, traffic to the host).
pub fn firewall_chains(instance: &str) -> (String, String) {
    let h = instance_hash(instance);
    (format!("LILYPAD-{h}"), format!("LILYPAD-{h}-IN"))
}

/// The nameservers in resolv.conf `text` (IPv4 only: the job network has no IPv6).
pub fn nameservers(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// The rules of the two chains, as `iptables -A` arguments, in order: DNS to `resolvers` let
/// through (port 53), then [`BLOCKED_RANGES`] dropped (forwarded) and everything else dropped
/// (to the host).
pub fn firewall_rules(instance: &str, resolvers: &[Ipv4Addr]) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let (fwd, inp) = firewall_chains(instance);
    let dns = |chain: &str| {
        resolvers
            .iter()
            .flat_map(|r| {
                ["udp", "tcp"].map(|proto| {
                    format!("-A {chain} -d {r}/32 -p {proto} -m {proto} --dport 53 -j RETURN")
                })
            })
            .collect::<Vec<_>>()
    };
    let split = |s: String| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    let mut forward: Vec<_> = dns(&fwd).into_iter().map(split).collect();
    forward.extend(BLOCKED_RANGES.iter().map(|r| split(format!("-A {fwd} -d {r} -j DROP"))));
    let mut input: Vec<_> = dns(&inp).into_iter().map(split).collect();
    input.push(split(format!("-A {inp} -j DROP")));
    (forward, input)
}

/// Output of one `iptables -w` call; `Err` holds its stderr (or why it did not start).
async fn iptables(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("iptables")
        .arg("-w")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`iptables {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes `chain` hold exactly `rules` (flushed and filled only when it differs, so a running
/// job is never left without them).
async fn sync_chain(chain: &str, rules: &[Vec<String>]) -> Result<(), String> {
    let listed = match iptables(&["-S", chain]).await {
        Ok(text) => text,
        Err(_) => {
            iptables(&["-N", chain]).await?;
            String::new()
        }
    };
    let have: Vec<&str> = listed.lines().filter(|l| l.starts_with("-A ")).collect();
    let want: Vec<String> = rules.iter().map(|r| r.join(" ")).collect();
    if have == want.iter().map(String::as_str).collect::<Vec<_>>() {
        return Ok(());
    }
    iptables(&["-F", chain]).await?;
    for rule in rules {
        let args: Vec<&str> = rule.iter().map(String::as_str).collect();
        iptables(&args).await?;
    }
    Ok(())
}

/// Puts `-i bridge -j chain` at the top of `parent` unless it is there.
async fn ensure_jump(parent: &str, bridge: &str, chain: &str) -> Result<(), String> {
    if iptables(&["-C", parent, "-i", bridge, "-j", chain]).await.is_ok() {
        return Ok(());
    }
    iptables(&["-I", parent, "1", "-i", bridge, "-j", chain]).await.map(|_| ())
}

impl Executor {
    /// Makes the job network and its firewall rules ready (see the module docs). Called before
    /// every network-enabled run; cheap when all is in place.
    pub(crate) async fn ensure_job_network(&self, job: &str) -> Result<(), ExecError> {
        let _one_at_a_time = self.network_lock.lock().await;
        let instance = &self.config.instance;
        let name = job_network_name(instance);
        let bridge = bridge_interface(instance);
        match self.docker.inspect_network(&name, None).await {
            Ok(_) => {}
            Err(e) if status_of(&e) == Some(404) => {
                let request = NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    internal: Some(false),
                    attachable: Some(false),
                    options: Some(HashMap::from([
                        ("com.docker.network.bridge.name".to_string(), bridge.clone()),
                        ("com.docker.network.bridge.enable_icc".to_string(), "false".to_string()),
                        ("com.docker.network.bridge.enable_ip_masquerade".to_string(), "true".to_string()),
                    ])),
                    labels: Some(HashMap::from([
                        (LABEL_EXECUTOR.to_string(), instance.clone()),
                        (LABEL_ROLE.to_string(), "network".to_string()),
                    ])),
                    ..Default::default()
                };
                match self.docker.create_network(request).await {
                    Ok(_) => info!(network = %name, %bridge, "job network created"),
                    Err(e) if status_of(&e) == Some(409) => {}
                    Err(e) => return Err(self.engine_err(Subject::Job(job.into()), "creating the job network")(e)),
                }
            }
            Err(e) => return Err(self.engine_err(Subject::Job(job.into()), "inspecting the job network")(e)),
        }
        let mut resolvers: Vec<Ipv4Addr> = RESOLV_FILES
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|t| nameservers(&t))
            // a loopback stub is reached from the engine's side, not through the bridge
            .filter(|a| !a.is_loopback())
            .collect();
        resolvers.sort();
        resolvers.dedup();
        let (fwd, inp) = firewall_chains(instance);
        let (fwd_rules, inp_rules) = firewall_rules(instance, &resolvers);
        let firewall = async {
            sync_chain(&fwd, &fwd_rules).await?;
            sync_chain(&inp, &inp_rules).await?;
            ensure_jump("DOCKER-USER", &bridge, &fwd).await?;
            ensure_jump("INPUT", &bridge, &inp).await
        };
        firewall.await.map_err(|reason| ExecError::Firewall { job: job.to_string(), reason })?;
        debug!(network = %name, "job network and firewall rules in place");
        Ok(())
    }

    /// Removes the job network and its firewall rules (made again by the next network-enabled
    /// run). Fails while a job of this instance is attached to the network.
    pub async fn remove_job_network(&self) -> Result<(), ExecError> {
        // the containers of finished runs leave the network as they are removed
        self.pool.background.idle().await;
        let _one_at_a_time = self.network_lock.lock().await;
        let instance = &self.config.instance;
        let name = job_network_name(instance);
        match self.docker.remove_network(&name).await {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(self.engine_err(Subject::Engine, "removing the job network")(e)),
        }
        let bridge = bridge_interface(instance);
        let (fwd, inp) = firewall_chains(instance);
        for (parent, chain) in [("DOCKER-USER", &fwd), ("INPUT", &inp)] {
            while iptables(&["-D", parent, "-i", &bridge, "-j", chain]).await.is_ok() {}
            if iptables(&["-S", chain]).await.is_ok() {
                let gone = async {
                    iptables(&["-F", chain]).await?;
                    iptables(&["-X", chain]).await
                };
                gone.await.map_err(|reason| ExecError::Firewall { job: String::new(), reason })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_limits_and_differ_per_instance() {
        let a = bridge_interface("provider-0xabc");
        assert!(a.len() <= 15, "{a}");
        assert_ne!(a, bridge_interface("mediator-0xabc"));
        let (fwd, inp) = firewall_chains("a-very-long-instance-name-of-some-provider");
        assert!(fwd.len() <= 28 && inp.len() <= 28, "{fwd} {inp}");
        assert_eq!(job_network_name("x"), job_network_name("x"));
    }

    #[test]
    fn nameservers_are_read_and_ipv6_skipped() {
        let text = "# comment\nnameserver 10.0.0.2\nnameserver ::1\nsearch lan\nnameserver 1.1.1.1\n";
        assert_eq!(nameservers(text), vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(1, 1, 1, 1)]);
    }

    #[test]
    fn rules_let_dns_through_then_drop_private_ranges_and_the_host() {
        let (fwd, inp) = firewall_rules("x", &[Ipv4Addr::new(10, 0, 0, 2)]);
        let (fc, ic) = firewall_chains("x");
        let text: Vec<String> = fwd.iter().map(|r| r.join(" ")).collect();
        assert_eq!(text[0], format!("-A {fc} -d 10.0.0.2/32 -p udp -m udp --dport 53 -j RETURN"));
        assert_eq!(text[1], format!("-A {fc} -d 10.0.0.2/32 -p tcp -m tcp --dport 53 -j RETURN"));
        for range in ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8", "100.64.0.0/10"] {
            assert!(text.contains(&format!("-A {fc} -d {range} -j DROP")), "{range} not dropped: {text:?}");
        }
        let input: Vec<String> = inp.iter().map(|r| r.join(" ")).collect();
        assert_eq!(input.last().unwrap(), &format!("-A {ic} -j DROP"));
        assert_eq!(input.len(), 3);
    }
}
