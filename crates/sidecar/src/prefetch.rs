//! A hint to the CPU to start loading memory that will be read soon, for the hot loops that
//! follow pointers to per-series data allocated far apart (prototypes, delivery states). It
//! changes no result, only when the loads happen; it must never be used to read anything.

/// Asks the CPU to load the two cache lines starting at `p` (x86-64; elsewhere nothing).
#[inline(always)]
pub fn prefetch<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let bytes = p.cast::<i8>();
        // SAFETY: a prefetch reads nothing into the program and never faults, whatever the
        // address; SSE, which it needs, is part of every x86-64 CPU.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(bytes);
            _mm_prefetch::<_MM_HINT_T0>(bytes.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks the CPU to load the cache line at `p` ready to be written (x86-64 `prefetchw`, a plain
/// load hint where the CPU lacks it; elsewhere nothing): for data another core wrote last, a
/// read hint would fetch a shared copy that the write must then claim in a second round trip.
#[inline(always)]
pub fn prefetch_write<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_ET0, _mm_prefetch};
        // SAFETY: as for `prefetch`: a hint that reads nothing and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_ET0>(p.cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks the CPU to load every cache line of `bytes` (at most the first 512 bytes).
#[inline(always)]
pub fn prefetch_slice(bytes: &[u8]) {
    let start = bytes.as_ptr();
    let mut offset = 0;
    while offset < bytes.len().min(512) {
        prefetch(start.wrapping_add(offset));
        offset += 128;
    }
}
