//! Reading a whole BPF hash map with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6+): one syscall per
//! few thousand entries, where iterating (aya's `MapIter`: `get_next_key`, then a lookup
//! per key) costs two per entry. The outstanding-allocations map is read at every tick;
//! with tens of thousands of entries under fstests, that iteration was a quarter of the
//! tracer's CPU (`perf record` of `tracer run --alloc-filter sym:xfs_`). aya has no batch
//! call, so this one is made here.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

/// `enum bpf_cmd`'s `BPF_MAP_LOOKUP_BATCH` (uapi).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr`'s `batch` member (uapi), as far as this command reads it.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries asked for per call at first (grown when one hash bucket holds more).
const CHUNK: usize = 4096;

/// Every (key, value) of the hash map behind `fd`, whose keys are `K` and values `V`
/// (plain data the kernel copies in). `Err`: the kernel refused the batch call (the
/// caller iterates instead). Entries added or removed meanwhile may or may not be seen,
/// as with any walk of a live map.
pub fn lookup_all<K: aya::Pod, V: aya::Pod>(fd: BorrowedFd<'_>) -> io::Result<Vec<(K, V)>> {
    let mut chunk = CHUNK;
    // SAFETY: `Pod` types are plain data: all-zero bytes are a valid value.
    let zk: K = unsafe { std::mem::zeroed() };
    let zv: V = unsafe { std::mem::zeroed() };
    let mut keys = vec![zk; chunk];
    let mut values = vec![zv; chunk];
    let mut out = Vec::new();
    // The kernel's position in the map (a bucket index for hash maps), handed back each call.
    let mut token = [0u8; 8];
    let mut next = [0u8; 8];
    let mut started = false;
    loop {
        let mut attr = BatchAttr {
            in_batch: if started { token.as_ptr() as u64 } else { 0 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: fd.as_raw_fd() as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: the buffers hold `count` keys and values of the map's sizes (the caller's
        // types), and the tokens 8 bytes (a hash map's is a u32).
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (r != 0).then(io::Error::last_os_error);
        let n = (attr.count as usize).min(chunk);
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        match err.as_ref().and_then(io::Error::raw_os_error) {
            None => {
                token = next;
                started = true;
            }
            // The end of the map: this call's entries were the last.
            Some(libc::ENOENT) => return Ok(out),
            // One bucket holds more entries than the buffers: larger ones, the same place.
            Some(libc::ENOSPC) if n == 0 && chunk < (1 << 20) => {
                chunk *= 4;
                keys = vec![zk; chunk];
                values = vec![zv; chunk];
            }
            _ => return Err(err.unwrap_or_else(|| io::Error::other("batch lookup"))),
        }
    }
}
