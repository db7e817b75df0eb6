//! A network link with delay and loss between this machine and a network namespace of its own,
//! for benchmarks that need a file server on "another host" ([`crate::Sshd::start_behind`]).
//!
//! `tc netem` on a veth pair would do it, but this machine's kernel has no `sch_netem`, so the
//! link is two TUN devices, one here and one in the namespace, and a thread per direction
//! that holds each packet for the delay (dropping the chosen share) before handing it to the
//! other side: netem's constant delay and random loss, in user space. The devices take the
//! kernel's segmentation offloads (`IFF_VNET_HDR`), so a packet is what netem on a veth sees,
//! a TCP send of up to 64 KiB, and a loss drops it whole. Both TCP ends are the kernel's own.
//! Everything goes when the link is dropped: the threads stop, the devices close, the
//! namespace is deleted.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::run;

/// What the link does to each packet, in each direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Held this long before delivery (netem's `delay`).
    pub delay: Duration,
    /// The share of packets dropped, 0.0–1.0 (netem's `loss`).
    pub loss: f64,
}

/// Packets held per direction before new ones are dropped (netem's default `limit`).
const QUEUE_LIMIT: usize = 1000;
/// One packet with its virtio header: a 64 KiB segmentation-offload send and then some.
const PACKET_MAX: usize = 128 * 1024;

/// A network namespace joined to this one by a delaying, lossy point-to-point link.
pub struct Link {
    /// The namespace's name (`ip netns`), for `nsenter --net=/run/netns/<name>`.
    pub namespace: String,
    /// This side's address on the link.
    pub local: String,
    /// The namespace's address on the link.
    pub remote: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Link {
    /// Makes the namespace `mftbench-<pid>-<n>` with loopback up and the link to it.
    pub fn start(impairment: Impairment) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // 10.250.<a>.<b>/30: a from the PID, b from the link number, so that links of
        // processes running side by side rarely share a subnet.
        let (a, b) = (pid % 250, (n % 64) * 4);
        let namespace = format!("mftbench-{pid}-{n}");
        let (local, remote) = (
            format!("10.250.{a}.{}", b + 1),
            format!("10.250.{a}.{}", b + 2),
        );
        let here_name = format!("mft{pid}l{n}");
        let there_name = format!("mft{pid}r{n}");
        let ip = |args: &[&str]| run(Command::new("ip").args(args));
        ip(&["netns", "add", &namespace])?;
        let mut link = Self {
            namespace,
            local,
            remote,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        let here = open_tun(&here_name)?;
        let there = open_tun(&there_name)?;
        let ns = link.namespace.clone();
        ip(&["link", "set", &there_name, "netns", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let remote_net = format!("{}/30", link.remote);
        ip(&["-n", &ns, "addr", "add", &remote_net, "dev", &there_name])?;
        ip(&["-n", &ns, "link", "set", &there_name, "up"])?;
        let local_net = format!("{}/30", link.local);
        ip(&["addr", "add", &local_net, "dev", &here_name])?;
        ip(&["link", "set", &here_name, "up"])?;
        for (from, to) in [(here.try_clone()?, there.try_clone()?), (there, here)] {
            let stop = link.stop.clone();
            link.threads.push(
                std::thread::Builder::new()
                    .name("netem".into())
                    .spawn(move || forward(from, to, impairment, &stop))?,
            );
        }
        Ok(link)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.namespace])
            .status();
    }
}

/// Opens a new TUN device `name` (no packet information, virtio headers, TCP offloads),
/// non-blocking. It lives until the file is closed.
fn open_tun(name: &str) -> Result<File> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
    const IFF_TUN: libc::c_short = 0x0001;
    const IFF_NO_PI: libc::c_short = 0x1000;
    const IFF_VNET_HDR: libc::c_short = 0x4000;
    const TUN_F_CSUM: libc::c_uint = 0x01;
    const TUN_F_TSO4: libc::c_uint = 0x02;
    const TUN_F_TSO6: libc::c_uint = 0x04;
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    if name.len() >= libc::IFNAMSIZ {
        bail!("interface name {name} is too long");
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .context("open /dev/net/tun")?;
    let mut request = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TUN | IFF_NO_PI | IFF_VNET_HDR,
        _pad: [0; 22],
    };
    request.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: both ioctls read a properly sized, initialised argument of the kernel's layout.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), TUNSETIFF, &request) < 0 {
            return Err(std::io::Error::last_os_error()).context("TUNSETIFF");
        }
        let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        if libc::ioctl(file.as_raw_fd(), TUNSETOFFLOAD, offloads) < 0 {
            return Err(std::io::Error::last_os_error()).context("TUNSETOFFLOAD");
        }
    }
    Ok(file)
}

/// Moves packets from `from` to `to`, each `delay` late, dropping `loss` of them, until `stop`.
fn forward(mut from: File, mut to: File, impairment: Impairment, stop: &AtomicBool) {
    let mut held: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0u8; PACKET_MAX];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, packet) = held.pop_front().expect("a held packet");
            // A full receive queue on the other side drops the packet, as a wire would.
            let _ = to.write(&packet);
        }
        let wait = held.front().map_or(Duration::from_millis(100), |(due, _)| {
            due.saturating_duration_since(now)
        });
        let mut poll = libc::pollfd {
            fd: from.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
        };
        // SAFETY: one valid pollfd and a valid timeout, no signal mask.
        if unsafe { libc::ppoll(&mut poll, 1, &timeout, std::ptr::null()) } <= 0 {
            continue;
        }
        let arrived = Instant::now();
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                return;
            }
            if held.len() < QUEUE_LIMIT && rand::random::<f64>() >= impairment.loss {
                held.push_back((arrived + impairment.delay, buf[..n].to_vec()));
            }
        }
    }
}
