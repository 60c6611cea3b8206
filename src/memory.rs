//! Returns to the kernel the memory a config load freed. Parsing a config takes about
//! 36 times the file's size while it runs (toml's document with spans for every key:
//! 47 MB for the 1.3 MB file of 10,000 services), all of it freed when the plan is
//! compiled, but glibc keeps freed memory resident: without this, a server's RSS stays
//! at its parse peak for good. `malloc_trim` gives back every free page, in every arena.
//! The library forbids unsafe code; the binary hands it this function instead.

/// Registers the trim with `config::load`.
pub fn release_after_each_load() {
    gslb::config::after_each_load(trim);
}

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
