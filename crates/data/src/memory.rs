//! Handing freed memory back to the operating system. The C allocator keeps pages a step
//! freed (a side input's transient copies, a finished step's state) in its arenas, where only
//! the thread that freed them reuses them; the process's resident size then ratchets up with
//! every transient peak. `release_free_memory` returns those pages, so the resident size
//! follows what is really held. It costs about a millisecond per 100 MB of heap: called once
//! per side input opened, per segment finished and every few dozen batches.

/// Returns the allocator's free pages to the operating system (glibc on Linux; elsewhere a
/// no-op).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas; it takes no
    // pointer and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Batches between two calls of [`release_free_memory`] while a source streams.
pub const RELEASE_EVERY_BATCHES: u64 = 4;
