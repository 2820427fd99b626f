//! A network-enabled job's network (issue 18): the executor's own bridge, with no route to
//! the host or private ranges. Against a real Docker engine with iptables, as root; skipped
//! loudly otherwise (failing when `LILYPAD_REQUIRE_DOCKER` is set and an engine answers).
//! All traffic stays on this machine: a listener on the host and one in a container on
//! Docker's default bridge (a private 172.17.x.x address), nothing on the internet.

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lilypad_executor::{firewall_chains, job_network_name, Executor, ExecutorConfig, Limits, RunSpec};

const IMAGE: &str = "lilypad-test/busybox:1";

fn sh(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

async fn engine(test: &str) -> Option<Executor> {
    let config = ExecutorConfig { instance: format!("test-{test}-{}", std::process::id()), ..Default::default() };
    let exec = match Executor::connect_with(config).await {
        Ok(e) if e.preflight().await.is_ok() => e,
        _ if std::env::var_os("LILYPAD_REQUIRE_DOCKER").is_some() => panic!("LILYPAD_REQUIRE_DOCKER is set but no Docker engine answers"),
        _ => {
            eprintln!("SKIPPED {test}: no Docker engine");
            return None;
        }
    };
    if sh("iptables", &["-w", "-S", "DOCKER-USER"]).is_err() {
        eprintln!("SKIPPED {test}: needs root and iptables with Docker's DOCKER-USER chain");
        return None;
    }
    if !exec.has_image(IMAGE).await.unwrap() {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::copy("/bin/busybox", ctx.path().join("busybox")).expect("/bin/busybox (Debian's busybox-static)");
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\", \"sh\", \"-c\"]\n",
        )
        .unwrap();
        exec.build_image(ctx.path(), IMAGE).await.expect("building the test image");
    }
    Some(exec)
}

/// A TCP listener on every address of the host, counting connections.
fn host_service() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            let mut s = s;
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.read(&mut [0u8; 16]);
        }
    });
    (port, count)
}

/// Removes the control container when the test ends, however it ends.
struct Container(String);
impl Drop for Container {
    fn drop(&mut self) {
        let _ = sh("docker", &["rm", "-f", &self.0]);
    }
}

/// The job reaches neither a service on the host (at its own gateway or at docker0's
/// address) nor a container at a private address; the same probes from Docker's default
/// bridge, where network-enabled jobs ran before, reach both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_enabled_job_reaches_neither_the_host_nor_private_addresses() {
    let Some(exec) = engine("net-isolation").await else { return };
    if sh("docker", &["version"]).is_err() {
        eprintln!("SKIPPED: the docker CLI is needed for the control container");
        return;
    }
    let instance = exec.config().instance.clone();
    let (port, connections) = host_service();

    // A private address: a container on the default bridge, listening on 7777.
    let name = format!("lilypad-nettest-{}", std::process::id());
    let label = format!("lilypad.executor={instance}");
    sh("docker", &["run", "-d", "--name", &name, "--label", &label, "--network", "bridge", IMAGE, "nc -ll -p 7777 -e /bin/busybox true"]).unwrap();
    let _control = Container(name.clone());
    let private_ip = sh("docker", &["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &name]).unwrap();
    assert!(private_ip.starts_with("172."), "{private_ip}");
    let docker0 = "172.17.0.1";

    let probe = format!(
        "GW=$(route -n | awk '$1==\"0.0.0.0\"{{print $2}}'); echo gw=$GW; \
         for t in \"$GW {port}\" \"{docker0} {port}\" \"{private_ip} 7777\"; do \
           if nc -w 2 $t </dev/null >/dev/null 2>&1; then echo \"open $t\"; else echo \"closed $t\"; fi; done"
    );

    // Control: from the default bridge both the host service and the private container answer.
    let control = sh("docker", &["run", "--rm", "--network", "bridge", "--label", &label, IMAGE, &probe]).unwrap();
    assert!(control.contains(&format!("open {docker0} {port}")), "control cannot reach the host service: {control}");
    assert!(control.contains(&format!("open {private_ip} 7777")), "control cannot reach the private container: {control}");
    let reached_by_control = connections.load(Ordering::SeqCst);
    assert!(reached_by_control >= 1);

    // The job: its own network, nothing of the host or private ranges.
    let spec = RunSpec {
        cmd: vec![format!("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; {probe}")],
        network: true,
        limits: Limits { wall_time: Duration::from_secs(60), memory_bytes: 64 << 20, ..Limits::default() },
        ..RunSpec::new(IMAGE)
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = exec.run("net-job", &spec, &tmp.path().join("r")).await.unwrap();
    let stdout = std::fs::read_to_string(tmp.path().join("r/stdout")).unwrap();
    assert_eq!(out.exit_code, 0, "{stdout}");
    assert!(stdout.contains("eth0"), "the job has a network: {stdout}");
    let gw = stdout.lines().find_map(|l| l.strip_prefix("gw=")).unwrap_or_default().to_string();
    assert!(!gw.is_empty() && gw != docker0, "the job is not on the default bridge: {stdout}");
    for target in [format!("{gw} {port}"), format!("{docker0} {port}"), format!("{private_ip} 7777")] {
        assert!(stdout.contains(&format!("closed {target}")), "the job reached {target}: {stdout}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), reached_by_control, "the host service saw the job");

    // The network and the rules are this instance's, and go with it.
    let network = exec.docker().inspect_network(&job_network_name(&instance), None).await.unwrap();
    assert_eq!(network.options.unwrap_or_default().get("com.docker.network.bridge.enable_icc").map(String::as_str), Some("false"));
    exec.remove_job_network().await.unwrap();
    let (fwd, inp) = firewall_chains(&instance);
    assert!(sh("iptables", &["-w", "-S", &fwd]).is_err() && sh("iptables", &["-w", "-S", &inp]).is_err(), "chains left");
    assert!(!sh("iptables", &["-w", "-S", "DOCKER-USER"]).unwrap().contains(&fwd), "jump left");
    assert!(!Path::new(&format!("/sys/class/net/{}", lilypad_executor::bridge_interface(&instance))).exists(), "bridge left");
    // the job's container and the outputs holder go too (the control container is the test's)
    exec.release().await;
    let filter = HashMap::from([("label", vec![label.clone(), "lilypad.role".to_string()])]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default().all(true).filters(&filter).build();
    let left = exec.docker().list_containers(Some(options)).await.unwrap();
    assert!(left.is_empty(), "containers left: {left:?}");
}
