//! The outputs holder: a tiny container that keeps a job's outputs volume mounted.
//!
//! A job writes its outputs to a tmpfs (so the size cap is enforced by the kernel). Docker
//! mounts a tmpfs volume when the first container using it starts and unmounts it — losing
//! its contents — when the last one stops. The holder starts first and is still running when
//! the job's container exits, so the outputs survive until the executor has copied them out
//! of the holder with `download_from_container`.
//!
//! The holder image is built locally (no registry is needed): `FROM scratch` with one static
//! ELF program, generated below, that does nothing but sleep in a loop (`pause(2)` on x86-64,
//! `ppoll(2)` with no descriptors and no timeout on aarch64). It needs no libc, no shell and
//! no file besides itself, and it runs with every privilege dropped like a job.

/// Tag of the holder image, versioned by the program's bytes (changing them changes the tag).
pub(crate) fn image_tag(arch: Arch) -> String {
    let sum = program(arch)
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
    format!(
        "lilypad/outputs-holder:{}-{:012x}",
        arch.name(),
        sum & 0xffff_ffff_ffff
    )
}

/// CPU architectures the holder program exists for (the engine's, not necessarily ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// From the engine's `Architecture` (`uname -m` style) or Go's `GOARCH` spelling.
    pub(crate) fn from_engine(s: &str) -> Option<Self> {
        match s {
            "x86_64" | "amd64" => Some(Arch::X86_64),
            "aarch64" | "arm64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }
}

const BASE: u64 = 0x40_0000;
const EHDR: usize = 64;
const PHDR: usize = 56;

/// A complete static ELF64 executable: header, one loadable segment, code.
pub(crate) fn program(arch: Arch) -> Vec<u8> {
    let (machine, code): (u16, &[u8]) = match arch {
        // loop: mov eax, 34 (pause); syscall; jmp loop
        Arch::X86_64 => (0x3e, &[0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]),
        // loop: mov x0..x4, #0; mov x8, #73 (ppoll); svc #0; b loop
        Arch::Aarch64 => (
            0xb7,
            &[
                0x00, 0x00, 0x80, 0xd2, // mov x0, #0
                0x01, 0x00, 0x80, 0xd2, // mov x1, #0
                0x02, 0x00, 0x80, 0xd2, // mov x2, #0
                0x03, 0x00, 0x80, 0xd2, // mov x3, #0
                0x04, 0x00, 0x80, 0xd2, // mov x4, #0
                0x28, 0x09, 0x80, 0xd2, // mov x8, #73
                0x01, 0x00, 0x00, 0xd4, // svc #0
                0xf9, 0xff, 0xff, 0x17, // b loop (-7 instructions)
            ],
        ),
    };
    let size = (EHDR + PHDR + code.len()) as u64;
    let mut f = Vec::with_capacity(size as usize);
    // ELF header
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&2u16.to_le_bytes()); // e_type: EXEC
    f.extend_from_slice(&machine.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&(BASE + (EHDR + PHDR) as u64).to_le_bytes()); // e_entry
    f.extend_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&(EHDR as u16).to_le_bytes()); // e_ehsize
    f.extend_from_slice(&(PHDR as u16).to_le_bytes()); // e_phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
                                              // Program header: PT_LOAD, R+X, the whole file at BASE
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&5u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    f.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    f.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    f.extend_from_slice(&size.to_le_bytes()); // p_filesz
    f.extend_from_slice(&size.to_le_bytes()); // p_memsz
    f.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    f.extend_from_slice(code);
    f
}

/// The holder's build context: a tar with `Dockerfile` and the program `holder`.
pub(crate) fn build_context(arch: Arch) -> std::io::Result<Vec<u8>> {
    let dockerfile = b"FROM scratch\nCOPY holder /holder\nENTRYPOINT [\"/holder\"]\n";
    let prog = program(arch);
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, mode) in [
        ("Dockerfile", &dockerfile[..], 0o644),
        ("holder", &prog[..], 0o755),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, data)?;
    }
    b.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_header_is_well_formed() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let p = program(arch);
            assert_eq!(&p[..4], b"\x7fELF");
            assert_eq!(p[4], 2, "64-bit");
            let entry = u64::from_le_bytes(p[24..32].try_into().unwrap());
            assert_eq!(entry, BASE + 120);
            let filesz = u64::from_le_bytes(p[EHDR + 32..EHDR + 40].try_into().unwrap());
            assert_eq!(filesz as usize, p.len());
        }
        assert_ne!(image_tag(Arch::X86_64), image_tag(Arch::Aarch64));
    }

    /// Runs the program (through `runner`, e.g. qemu, when given) and checks it keeps running.
    #[cfg(target_os = "linux")]
    fn runs_until_killed(arch: Arch, runner: Option<&str>) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holder");
        std::fs::write(&path, program(arch)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = match runner {
            Some(r) => std::process::Command::new(r).arg(&path).spawn().unwrap(),
            None => std::process::Command::new(&path).spawn().unwrap(),
        };
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the {arch:?} holder must keep running"
        );
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
    }

    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn x86_64_program_runs_until_killed() {
        runs_until_killed(Arch::X86_64, None);
    }

    /// Checked under qemu-user when it is installed (`apt-get install qemu-user-static`).
    #[test]
    #[cfg(target_os = "linux")]
    fn aarch64_program_runs_until_killed() {
        if cfg!(target_arch = "aarch64") {
            return runs_until_killed(Arch::Aarch64, None);
        }
        let qemu = ["qemu-aarch64-static", "qemu-aarch64"]
            .into_iter()
            .find(|q| {
                std::process::Command::new(q)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            });
        match qemu {
            Some(q) => runs_until_killed(Arch::Aarch64, Some(q)),
            None => eprintln!("SKIPPED: no qemu-aarch64 to run the aarch64 holder program"),
        }
    }
}
