//! One AF_XDP socket in copy mode, with its own UMEM of [`FRAMES`] frames and its four
//! rings: fill (frames we give the kernel to receive into), RX (frames received),
//! TX (frames to send) and completion (frames sent, ours again).
//!
//! Frames move in a circle and are never copied: every frame starts in the fill ring;
//! a received frame is rewritten in place into its reply and goes to TX, or straight
//! back to fill when there is nothing to send; a sent frame comes back through the
//! completion ring and goes to fill again. The fill ring holds every frame, so a
//! frame always has a place to go.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::ring::{Mapping, Ring};

/// Frames in the UMEM, each [`FRAME`] bytes: 2 MiB per socket, pinned by the kernel.
const FRAMES: u32 = 1024;
/// Bytes per frame. In copy mode the kernel writes a packet `XDP_PACKET_HEADROOM`
/// (256) bytes into its frame, so a reply may use up to 1,792 bytes from there.
const FRAME: u64 = 2048;
/// RX and TX ring entries; fill and completion hold every frame.
const RING: u32 = 512;

/// See [`Socket::statistics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statistics {
    pub rx_lost: u64,
    pub tx_invalid: u64,
}

/// An AF_XDP socket bound to one queue of one interface, in copy mode.
pub struct Socket {
    // Field order is drop order: the rings and frames go before the socket closes.
    fill: Ring<u64>,
    completion: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    umem: Mapping,
    fd: OwnedFd,
}

// SAFETY: the rings and frames are reached only through `&mut self` (or `&self` for
// the atomic indexes), never shared with another thread of ours.
unsafe impl Send for Socket {}

impl Socket {
    /// A socket on queue `queue` of interface `ifindex`, with every frame given to
    /// the kernel to receive into.
    pub fn new(ifindex: u32, queue: u32) -> io::Result<Socket> {
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(annotate(
                "cannot open an AF_XDP socket",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        let umem = Mapping::new(None, (u64::from(FRAMES) * FRAME) as usize, 0)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr.as_ptr() as u64,
            len: umem.len as u64,
            chunk_size: FRAME as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &reg)
            .map_err(|e| annotate("cannot register the frames", e))?;
        for (opt, size) in [
            (libc::XDP_UMEM_FILL_RING, FRAMES),
            (libc::XDP_UMEM_COMPLETION_RING, FRAMES),
            (libc::XDP_RX_RING, RING),
            (libc::XDP_TX_RING, RING),
        ] {
            setsockopt(raw, opt, &size).map_err(|e| annotate("cannot size a ring", e))?;
        }
        let off = mmap_offsets(raw)?;
        let mut fill = Ring::<u64>::map(raw, FRAMES, &off.fr, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        let completion =
            Ring::<u64>::map(raw, FRAMES, &off.cr, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;
        let rx = Ring::map(raw, RING, &off.rx, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx = Ring::map(raw, RING, &off.tx, libc::XDP_PGOFF_TX_RING as u64)?;
        for k in 0..u64::from(FRAMES) {
            fill.push(k * FRAME);
        }
        fill.publish();
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: a valid sockaddr_xdp of the size passed.
        let r = unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(annotate(
                &format!("cannot bind the AF_XDP socket to queue {queue} of interface {ifindex}"),
                io::Error::last_os_error(),
            ));
        }
        Ok(Socket {
            fill,
            completion,
            rx,
            tx,
            umem,
            fd,
        })
    }

    /// Frames the kernel could not hand to this socket since it opened (its RX ring
    /// was full, or it had no frame to receive into, or dropped them otherwise), and
    /// TX descriptors it refused as invalid.
    pub fn statistics(&self) -> io::Result<Statistics> {
        // SAFETY: an all-zero xdp_statistics is a valid value of plain integers.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` has room for `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Statistics {
            rx_lost: st.rx_dropped + st.rx_ring_full + st.rx_fill_ring_empty_descs,
            tx_invalid: st.tx_invalid_descs,
        })
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Blocks until a frame is received and there is room to answer it, or `timeout`
    /// passes; true if one can be served. Sends what waits in the TX ring and takes
    /// back sent frames first, so that neither replies nor the frames to receive into
    /// are held while no query arrives. With replies still waiting to go out, it
    /// waits at most a millisecond before trying them again.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        self.reclaim();
        if self.tx.unconsumed() > 0 {
            self.flush()?;
            self.reclaim();
        }
        let has_rx = self.rx.ready() > 0;
        if has_rx && self.tx.free() > 0 {
            return Ok(true);
        }
        // A frame to serve but no TX room: wait for room, not for more frames.
        let events = if has_rx { libc::POLLOUT } else { libc::POLLIN };
        let mut p = libc::pollfd {
            fd: self.raw_fd(),
            events,
            revents: 0,
        };
        let ms = if self.tx.unconsumed() > 0 {
            1
        } else {
            timeout.as_millis().min(i32::MAX as u128) as i32
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        self.reclaim();
        Ok(self.rx.ready() > 0 && self.tx.free() > 0)
    }

    /// Takes up to `max` received frames and calls `f(frame, len)` on each: `frame`
    /// is the packet's frame from its first byte to the end of the frame, the first
    /// `len` bytes the packet. `f` returns `Some(n)` to send the first `n` bytes of the
    /// frame (rewritten in place) or `None` to send nothing. Then sends every reply
    /// with one system call. Returns how many frames were received.
    pub fn serve_batch(
        &mut self,
        max: u32,
        mut f: impl FnMut(&mut [u8], usize) -> Option<usize>,
    ) -> io::Result<u32> {
        self.reclaim();
        let n = self.rx.ready().min(max).min(self.tx.free());
        let mut sent = 0;
        for k in 0..n {
            let d = self.rx.peek(k);
            let start = d.addr;
            // The kernel gives addresses inside the UMEM; checked all the same, without
            // arithmetic that could wrap.
            let end = (start - start % FRAME).saturating_add(FRAME);
            let in_umem = start < self.umem.len as u64
                && end <= self.umem.len as u64
                && u64::from(d.len) <= end - start;
            let reply = if in_umem {
                // SAFETY: `start..end` lies inside the UMEM (checked above), and the
                // kernel gave this frame to us: nothing else touches it until we
                // hand it back through TX or fill.
                let frame = unsafe {
                    std::slice::from_raw_parts_mut(
                        self.umem.ptr.as_ptr().add(start as usize),
                        (end - start) as usize,
                    )
                };
                // A zero-length descriptor the kernel would refuse, and never complete.
                f(frame, d.len as usize).filter(|&len| len > 0 && len <= frame.len())
            } else {
                None
            };
            match reply {
                Some(len) => {
                    self.tx.push(libc::xdp_desc {
                        addr: start,
                        len: len as u32,
                        options: 0,
                    });
                    sent += 1;
                }
                None => self.fill.push(start - start % FRAME),
            }
        }
        self.rx.release(n);
        self.fill.publish();
        if sent > 0 {
            self.tx.publish();
        }
        self.flush()?;
        self.reclaim();
        Ok(n)
    }

    /// Has the kernel send what waits in the TX ring. In copy mode the sending
    /// happens inside this call, up to 32 frames at a time.
    pub fn flush(&mut self) -> io::Result<()> {
        for _ in 0..RING / 32 + 1 {
            if self.tx.unconsumed() == 0 {
                return Ok(());
            }
            // SAFETY: sendto with no data and no address: the AF_XDP "send now".
            let r = unsafe {
                libc::sendto(
                    self.raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR) => {}
                    _ => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Frames the kernel has sent go back to the fill ring.
    fn reclaim(&mut self) {
        let n = self.completion.ready();
        if n == 0 {
            return;
        }
        for k in 0..n {
            let addr = self.completion.peek(k);
            self.fill.push(addr - addr % FRAME);
        }
        self.completion.release(n);
        self.fill.publish();
    }
}

fn annotate(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a valid value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn mmap_offsets(fd: RawFd) -> io::Result<libc::xdp_mmap_offsets> {
    // SAFETY: an all-zero xdp_mmap_offsets is a valid value of plain integers.
    let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: `off` has room for `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&mut off as *mut libc::xdp_mmap_offsets).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(annotate(
            "cannot read the ring offsets",
            io::Error::last_os_error(),
        ));
    }
    Ok(off)
}
