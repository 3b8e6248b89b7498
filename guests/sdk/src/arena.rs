//! The per-event arena: a bump allocator in front of the standard one, for
//! the memory a step allocates while it handles an event.
//!
//! The host runs each event on a fresh instance, so a step's allocations
//! live for one event. Bumping a pointer through one buffer costs a few
//! instructions per allocation (dlmalloc, the standard allocator of
//! `wasm32-wasip2`, costs a search of its free lists) and writes the pages
//! of one contiguous range, which the host resets cheaply after the event.
//! In a pre-initialised guest the difference is large: dlmalloc's free
//! lists are full of the chunks that initialisation freed (a model parse),
//! so an event's allocations land scattered over its heap.
//!
//! It is safe whatever the guest keeps: arena memory is reused only when
//! *no* arena block is live (a count of blocks, checked on every free), so
//! state kept across events in a warm instance, or leaked, pins the arena
//! until it is full; then allocations go to the standard allocator, as
//! they would without the arena. Memory allocated before the arena is
//! activated (by `Step::preinitialize`, e.g. a model) never lives in it.
//!
//! Hand-written instead of a crate: the bump allocators on crates.io are
//! either not global allocators (`bumpalo`) or never reuse memory
//! (`lol_alloc`'s leaking allocator), and neither falls back when full.

// A global allocator cannot be written without `unsafe`: this module is
// the only place in the SDK that needs it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

/// Bytes of the arena. Ample for an ordinary event (the content filter
/// uses tens of KiB per review) while bounding what the arena adds to every
/// instance's memory: the buffer is zero pages in `.bss` until used, and
/// an event that needs more continues in the standard allocator.
pub const ARENA_BYTES: usize = 1 << 20;

/// The arena's memory: `.bss`, aligned for any ordinary type.
#[repr(C, align(16))]
struct Buffer(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: the arena is compiled only for wasm32 without the `atomics`
// target feature, where a guest has exactly one thread, so the buffer is
// never touched from two threads.
unsafe impl Sync for Buffer {}

/// The global allocator of a guest built with the SDK's `event-arena`
/// feature (the default).
pub struct EventArena {
    /// Where arena blocks are cut from.
    buffer: Buffer,
    /// Offset of the first free byte of `buffer`.
    next: AtomicUsize,
    /// Arena blocks allocated and not yet freed; at 0 the arena is empty
    /// and `next` goes back to 0.
    live: AtomicUsize,
    /// Off until the guest's set-up (pre-initialisation) is done, so what
    /// set-up keeps lives in the standard allocator.
    active: AtomicBool,
}

impl EventArena {
    /// An empty, inactive arena (a `static` initialiser).
    pub const fn new() -> Self {
        Self {
            buffer: Buffer(UnsafeCell::new([0; ARENA_BYTES])),
            next: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            active: AtomicBool::new(false),
        }
    }

    /// From now on, allocate from the arena first.
    pub fn activate(&self) {
        self.active.store(true, Relaxed);
    }

    fn base(&self) -> usize {
        self.buffer.0.get() as usize
    }

    /// Whether `ptr` was cut from the arena.
    fn owns(&self, ptr: *mut u8) -> bool {
        let at = ptr as usize;
        at >= self.base() && at < self.base() + ARENA_BYTES
    }

    /// A block for `layout` from the arena, or `None` when it has no room.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let base = self.base();
        let start = (base + self.next.load(Relaxed)).checked_next_multiple_of(layout.align())?;
        let end = start.checked_add(layout.size())?;
        if end > base + ARENA_BYTES {
            return None;
        }
        self.next.store(end - base, Relaxed);
        self.live.fetch_add(1, Relaxed);
        // Derived from the buffer's own pointer, so it keeps its provenance.
        Some(self.buffer.0.get().cast::<u8>().wrapping_add(start - base))
    }
}

impl Default for EventArena {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out is either the standard allocator's or a
// range of `buffer` that no live block overlaps: `next` only moves back to
// the start when the count of live arena blocks is zero, or to the start
// of the most recent block when that very block is freed or resized.
// Blocks are aligned as `layout` asks and lie wholly inside the buffer.
unsafe impl GlobalAlloc for EventArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.active.load(Relaxed)
            && let Some(block) = self.bump(layout)
        {
            return block;
        }
        // SAFETY: the caller's contract for `layout` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !self.owns(ptr) {
            // SAFETY: not an arena block, so the standard allocator's.
            return unsafe { System.dealloc(ptr, layout) };
        }
        let offset = ptr as usize - self.base();
        if self.live.fetch_sub(1, Relaxed) == 1 {
            self.next.store(0, Relaxed);
        } else if offset + layout.size() == self.next.load(Relaxed) {
            // The most recent block: give its bytes back at once.
            self.next.store(offset, Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(ptr) {
            // SAFETY: not an arena block, so the standard allocator's.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let offset = ptr as usize - self.base();
        if offset + layout.size() == self.next.load(Relaxed) && offset + new_size <= ARENA_BYTES {
            // The most recent block grows or shrinks in place.
            self.next.store(offset + new_size, Relaxed);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: `new_size` is non-zero (larger than a valid layout's
        // size) and the alignment is the original, valid one.
        let grown =
            unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !grown.is_null() {
            // SAFETY: both blocks are live, distinct, and at least
            // `layout.size()` bytes long.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, grown, layout.size());
                self.dealloc(ptr, layout);
            }
        }
        grown
    }
}
