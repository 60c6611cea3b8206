//! Returns to the kernel the memory a config load freed. Parsing a config takes about
//! 36 times the file's size while it runs (toml's document with spans for every key:
//! 47 MB for the 1.3 MB file of 10,000 services), all of it freed when the plan is
//! compiled, but glibc keeps freed memory resident: without this, a server's RSS stays
//! at its parse peak for good. `malloc_trim` gives back every free page, in every arena.
//! The library forbids unsafe code; the binary hands it this function instead.
//!
//! It also keeps glibc to one malloc arena. By default every thread that allocates
//! gets an arena of its own (up to 8 per core), each holding its own freed memory:
//! the probe tasks, which allocate, run on every runtime thread. With 10,000 services
//! over 1,000 probed gateways that slack was 5 MiB of a 32 MiB idle RSS. The query
//! path does not allocate on the fast path, and glibc's per-thread cache serves the
//! small allocations of the rest without taking the arena's lock. `MALLOC_ARENA_MAX`
//! in the environment still decides, when an operator sets it.

/// Registers the trim with `config::load`, and limits the arenas; call it before any
/// thread is started.
pub fn release_after_each_load() {
    one_arena();
    gslb::config::after_each_load(trim);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_arena() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called from main
        // before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_arena() {}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no
    // pointer from us and is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
