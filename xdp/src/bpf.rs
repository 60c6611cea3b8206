//! The XDP program that steers queries to AF_XDP sockets, assembled here by hand (a
//! few dozen instructions: no compiler for BPF is needed to build gslb), loaded with
//! the `bpf` system call and attached with a BPF link, which the kernel detaches when
//! the last descriptor of it closes: when [`Steering`] is dropped or the process ends,
//! however it ends.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::xsk::Socket;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_PASS: i32 = 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;

/// One (address, port) the program takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub addr: Ipv4Addr,
    pub port: u16,
}

/// Where on the interface's receive path the program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// After the kernel has built its socket buffer for the packet: works on any
    /// interface, `lo` included, and copies each packet once more.
    Generic,
    /// In the driver, before any socket buffer: needs a driver with XDP support (most
    /// server NICs, `veth`, virtio-net); not `lo`.
    Native,
}

/// The interface index of `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface {name:?}"),
        ));
    }
    Ok(i)
}

/// The attached program and its socket map. Dropping it detaches the program.
#[derive(Debug)]
pub struct Steering {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl Steering {
    /// Loads the program for `matches` and attaches it to `ifindex` in `mode`, with
    /// room for sockets on queues `0..queues`. Until [`Steering::insert`] puts a socket
    /// on a queue, that queue's datagrams go on to the kernel's stack.
    pub fn attach(
        ifindex: u32,
        mode: Mode,
        queues: u32,
        matches: &[Match],
    ) -> io::Result<Steering> {
        if matches.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no IPv4 address and port to steer",
            ));
        }
        let map = map_create(queues.max(1))?;
        let insns = program(map.as_raw_fd(), matches);
        let prog = prog_load(&insns)?;
        let link = link_create(prog.as_raw_fd(), ifindex, mode)?;
        Ok(Steering {
            map,
            _prog: prog,
            _link: link,
        })
    }

    /// From now on, queue `queue`'s matching datagrams go to `socket`.
    pub fn insert(&self, queue: u32, socket: &Socket) -> io::Result<()> {
        let key = queue;
        let value: u32 = socket.raw_fd() as u32;
        let mut attr = Attr::default();
        attr.put_u32(0, self.map.as_raw_fd() as u32);
        attr.put_u64(8, &key as *const u32 as u64);
        attr.put_u64(16, &value as *const u32 as u64);
        attr.put_u64(24, 0); // BPF_ANY
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
            .map(drop)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot put the AF_XDP socket of queue {queue} in the map: {e}"),
                )
            })
    }
}

/// `union bpf_attr`, as much of it as these commands use, zero beyond.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Default for Attr {
    fn default() -> Self {
        Attr([0; 128])
    }
}

impl Attr {
    fn put_u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }
}

/// The `bpf` system call: its non-negative result.
fn sys_bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a zeroed, 8-aligned bpf_attr of the size passed; every
    // pointer written into it points at memory that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// A command that makes a new object answers with its descriptor.
fn sys_bpf_fd(cmd: libc::c_long, attr: &mut Attr) -> io::Result<OwnedFd> {
    let fd = sys_bpf(cmd, attr)?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn map_create(entries: u32) -> io::Result<OwnedFd> {
    let mut attr = Attr::default();
    attr.put_u32(0, BPF_MAP_TYPE_XSKMAP);
    attr.put_u32(4, 4); // key: the queue index
    attr.put_u32(8, 4); // value: the socket's descriptor
    attr.put_u32(12, entries);
    sys_bpf_fd(BPF_MAP_CREATE, &mut attr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create the XDP socket map: {e}")))
}

/// Loads without the verifier's log first (a log too small for it fails a program
/// that would pass), and only on failure again with the log, for the error.
fn prog_load(insns: &[Insn]) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let load = |log: Option<&mut Vec<u8>>| {
        let mut attr = Attr::default();
        attr.put_u32(0, BPF_PROG_TYPE_XDP);
        attr.put_u32(4, insns.len() as u32);
        attr.put_u64(8, insns.as_ptr() as u64);
        attr.put_u64(16, license.as_ptr() as u64);
        if let Some(log) = log {
            attr.put_u32(24, 1); // log_level
            attr.put_u32(28, log.len() as u32);
            attr.put_u64(32, log.as_mut_ptr() as u64);
        }
        attr.0[48..48 + 8].copy_from_slice(b"gslb_dns");
        attr.put_u32(68, BPF_XDP); // expected_attach_type
        sys_bpf_fd(BPF_PROG_LOAD, &mut attr)
    };
    load(None).or_else(|e| {
        let mut log = vec![0u8; 256 * 1024];
        let again = load(Some(&mut log));
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]);
        again.map_err(|_| {
            io::Error::new(
                e.kind(),
                format!(
                    "the kernel refused the XDP program: {e}; verifier: {}",
                    text.trim()
                ),
            )
        })
    })
}

fn link_create(prog: RawFd, ifindex: u32, mode: Mode) -> io::Result<OwnedFd> {
    let mut attr = Attr::default();
    attr.put_u32(0, prog as u32);
    attr.put_u32(4, ifindex);
    attr.put_u32(8, BPF_XDP);
    attr.put_u32(
        12,
        match mode {
            Mode::Generic => XDP_FLAGS_SKB_MODE,
            Mode::Native => XDP_FLAGS_DRV_MODE,
        },
    );
    sys_bpf_fd(BPF_LINK_CREATE, &mut attr).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EBUSY) => " (another XDP program is attached to it)",
            Some(libc::EEXIST) => " (an XDP program in the other mode is attached to it)",
            Some(libc::EOPNOTSUPP) if mode == Mode::Native => {
                " (its driver has no native XDP; xdp_mode = \"generic\" works on any interface)"
            }
            _ => "",
        };
        io::Error::new(
            e.kind(),
            format!("cannot attach the XDP program to interface {ifindex}: {e}{why}"),
        )
    })
}

/// `struct bpf_insn`: opcode, registers (dst low nibble, src high), offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes (class | size/op | source).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const AND32_K: u8 = 0x54;
const JGT_X: u8 = 0x2d;
const JNE32_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K: compares the low 32 bits
const JA: u8 = 0x05;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;

/// Where a jump to the end goes, patched once the targets' positions are known.
#[derive(Clone, Copy)]
enum To {
    Pass,
    Redirect,
}

/// The program. Registers: r1 the context, r2 the packet, r3 its end, r4 the UDP
/// destination port, r5 scratch and then the IPv4 destination address. Loads are in
/// host order, so constants are the wire bytes read the same way.
pub(crate) fn program(map_fd: RawFd, matches: &[Match]) -> Vec<Insn> {
    let mut code: Vec<(Insn, Option<To>)> = Vec::new();
    let mut op = |i: Insn, to: Option<To>| code.push((i, to));
    op(insn(LDX_W, 2, 1, 0, 0), None); // r2 = ctx->data
    op(insn(LDX_W, 3, 1, 4, 0), None); // r3 = ctx->data_end
    op(insn(MOV64_X, 4, 2, 0, 0), None);
    op(insn(ADD64_K, 4, 0, 0, 14 + 20 + 8), None); // Ethernet, IPv4 without options, UDP
    op(insn(JGT_X, 4, 3, 0, 0), Some(To::Pass));
    let ethertype_ipv4 = i32::from(u16::from_ne_bytes([0x08, 0x00]));
    op(insn(LDX_H, 5, 2, 12, 0), None);
    op(insn(JNE32_K, 5, 0, 0, ethertype_ipv4), Some(To::Pass));
    op(insn(LDX_B, 5, 2, 14, 0), None); // version 4, header of 5 words
    op(insn(JNE32_K, 5, 0, 0, 0x45), Some(To::Pass));
    op(insn(LDX_B, 5, 2, 23, 0), None); // protocol
    op(insn(JNE32_K, 5, 0, 0, 17), Some(To::Pass));
    // A fragment (more-fragments set or an offset) goes to the kernel to reassemble.
    op(insn(LDX_H, 5, 2, 20, 0), None);
    let frag_mask = i32::from(u16::from_ne_bytes([0x3f, 0xff]));
    op(insn(AND32_K, 5, 0, 0, frag_mask), None);
    op(insn(JNE32_K, 5, 0, 0, 0), Some(To::Pass));
    op(insn(LDX_H, 4, 2, 14 + 20 + 2, 0), None); // UDP destination port
    op(insn(LDX_W, 5, 2, 14 + 16, 0), None); // IPv4 destination address
    // One block of three per match; a failed test skips to the next block.
    for m in matches {
        let port = i32::from(u16::from_ne_bytes(m.port.to_be_bytes()));
        let addr = i32::from_ne_bytes(m.addr.octets());
        op(insn(JNE32_K, 4, 0, 2, port), None);
        op(insn(JNE32_K, 5, 0, 1, addr), None);
        op(insn(JA, 0, 0, 0, 0), Some(To::Redirect));
    }
    let pass = code.len();
    let mut op = |i: Insn| code.push((i, None));
    op(insn(MOV64_K, 0, 0, 0, XDP_PASS));
    op(insn(EXIT, 0, 0, 0, 0));
    let redirect = pass + 2;
    op(insn(LDX_W, 2, 1, 16, 0)); // key: ctx->rx_queue_index
    op(insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map_fd));
    op(insn(0, 0, 0, 0, 0)); // the second half of the 64-bit load
    op(insn(MOV64_K, 3, 0, 0, XDP_PASS)); // no socket on that queue: pass
    op(insn(CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP));
    op(insn(EXIT, 0, 0, 0, 0));
    code.into_iter()
        .enumerate()
        .map(|(pos, (mut i, to))| {
            if let Some(to) = to {
                let target = match to {
                    To::Pass => pass,
                    To::Redirect => redirect,
                };
                i.off = (target - (pos + 1)) as i16;
            }
            i
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_the_blocks_they_name() {
        let m = [
            Match {
                addr: Ipv4Addr::new(127, 0, 0, 1),
                port: 53,
            },
            Match {
                addr: Ipv4Addr::new(192, 0, 2, 53),
                port: 5353,
            },
        ];
        let p = program(7, &m);
        // Every jump goes forward and stays inside the program.
        for (pos, i) in p.iter().enumerate() {
            if matches!(i.code, JGT_X | JNE32_K | JA) {
                let to = pos + 1 + i.off as usize;
                assert!(i.off >= 0 && to < p.len(), "jump at {pos} to {to}");
            }
        }
        let port = |n: u16| i32::from(u16::from_ne_bytes(n.to_be_bytes()));
        let at = |imm: i32| {
            p.iter()
                .position(|i| i.code == JNE32_K && i.imm == imm)
                .unwrap()
        };
        let (first, second) = (at(port(53)), at(port(5353)));
        // Each block: the port test, the address test, the jump to the redirect.
        for (b, addr) in [(first, [127, 0, 0, 1]), (second, [192, 0, 2, 53])] {
            assert_eq!(p[b + 1].code, JNE32_K);
            assert_eq!(p[b + 1].imm, i32::from_ne_bytes(addr));
            assert_eq!(p[b + 2].code, JA);
        }
        // The first block's failed port test, and its failed address test, land on the
        // second block's port test.
        assert_eq!(first + 1 + p[first].off as usize, second);
        assert_eq!(first + 2 + p[first + 1].off as usize, second);
        // Both blocks' jumps reach the redirect, which looks the queue up in map 7.
        let redirect = second + 3 + p[second + 2].off as usize;
        assert_eq!(first + 3 + p[first + 2].off as usize, redirect);
        assert_eq!(p[redirect].code, LDX_W);
        assert_eq!(p[redirect + 1].code, LD_IMM64);
        assert_eq!(p[redirect + 1].imm, 7);
        assert_eq!(p.last().unwrap().code, EXIT);
    }
}
