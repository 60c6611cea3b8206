//! The shared memory of an AF_XDP socket: a mapping that unmaps itself, and a ring
//! (a producer index, a consumer index and the entries between them) inside one.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// A mapping we unmap on drop.
pub(crate) struct Mapping {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
}

impl Mapping {
    pub(crate) fn new(fd: Option<RawFd>, len: usize, offset: libc::off_t) -> io::Result<Mapping> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping that aliases nothing of ours.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(p.cast()).expect("mmap does not return null on success"),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One ring: a producer and a consumer index that run freely (wrapping at 2^32) and
/// `size` entries of `T`. On the side we produce we own the producer index; on the
/// side we consume, the consumer index.
pub(crate) struct Ring<T> {
    _map: Mapping,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    entries: NonNull<T>,
    mask: u32,
    /// Our own index (the producer's or the consumer's), mirrored in the ring.
    mine: u32,
}

impl<T: Copy> Ring<T> {
    pub(crate) fn map(
        fd: RawFd,
        size: u32,
        off: &libc::xdp_ring_offset,
        pgoff: u64,
    ) -> io::Result<Self> {
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mapping::new(Some(fd), len, pgoff as libc::off_t)?;
        let base = map.ptr.as_ptr();
        // SAFETY: the offsets the kernel gave lie inside the mapping of `len` bytes,
        // and the indexes are 4-aligned u32 words the kernel updates atomically.
        let (producer, consumer, entries) = unsafe {
            (
                NonNull::new_unchecked(base.add(off.producer as usize).cast::<AtomicU32>()),
                NonNull::new_unchecked(base.add(off.consumer as usize).cast::<AtomicU32>()),
                NonNull::new_unchecked(base.add(off.desc as usize).cast::<T>()),
            )
        };
        Ok(Ring {
            _map: map,
            producer,
            consumer,
            entries,
            mask: size - 1,
            mine: 0,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into our mapping, which lives as long as `self`.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    // --- the side we produce (fill, TX)

    /// Slots free for us to fill.
    pub(crate) fn free(&self) -> u32 {
        let used = self
            .mine
            .wrapping_sub(self.consumer().load(Ordering::Acquire));
        self.mask + 1 - used
    }

    /// Writes one entry; the caller checked `free()`. Visible after `publish`.
    pub(crate) fn push(&mut self, v: T) {
        let i = (self.mine & self.mask) as usize;
        // SAFETY: `i` is inside the ring, and the slot is ours until published.
        unsafe { self.entries.as_ptr().add(i).write(v) };
        self.mine = self.mine.wrapping_add(1);
    }

    pub(crate) fn publish(&self) {
        self.producer().store(self.mine, Ordering::Release);
    }

    /// Entries we published that the kernel has not taken yet.
    pub(crate) fn unconsumed(&self) -> u32 {
        self.mine
            .wrapping_sub(self.consumer().load(Ordering::Acquire))
    }

    // --- the side we consume (RX, completion)

    /// Entries ready for us.
    pub(crate) fn ready(&self) -> u32 {
        self.producer()
            .load(Ordering::Acquire)
            .wrapping_sub(self.mine)
    }

    /// The `k`-th ready entry; the caller checked `ready()`.
    pub(crate) fn peek(&self, k: u32) -> T {
        let i = (self.mine.wrapping_add(k) & self.mask) as usize;
        // SAFETY: inside the ring; the kernel published it (Acquire in `ready`).
        unsafe { self.entries.as_ptr().add(i).read() }
    }

    /// Gives `n` consumed entries back to the kernel.
    pub(crate) fn release(&mut self, n: u32) {
        self.mine = self.mine.wrapping_add(n);
        self.consumer().store(self.mine, Ordering::Release);
    }
}
