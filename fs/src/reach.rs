//! Reachability, as kmemleak decides it: an object whose address (or an address inside
//! it) is stored in global data is referenced, not leaked. A table that a first mount
//! makes and keeps for later mounts (xfs's UUID table, leakyfs's `table_size`) hangs off a
//! global pointer; a leak hangs off nothing. This module is the pure part: which words of
//! memory read from the kernel point into which tracked objects, and where the kernel's
//! data sections are (from `/proc/iomem`). Reading the memory is the tracer's.
//!
//! Only global data is scanned (the kernel's `.data` and `.bss`, each module's writable
//! data), not the heap: an object referenced only from another heap object (a list of
//! leaked objects, a per-mount structure) is not found referenced here, where kmemleak
//! would follow the heap object if that one is referenced. Per-CPU areas and stacks are
//! not scanned either.

use std::collections::BTreeMap;

/// A range of kernel memory to scan, with what it is for the reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// `kernel .bss`, `module leakyfs data`.
    pub name: String,
    pub start: u64,
    pub end: u64,
}

impl Region {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where one object's reference was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The address of the word that holds the reference.
    pub at: u64,
    /// The region it is in (its name).
    pub region: String,
}

/// The tracked objects, as address ranges sorted by start, to look words up in.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    /// `(start, end)`, sorted by start.
    ranges: Vec<(u64, u64)>,
}

impl Targets {
    /// Objects as `(address, size)`; a size of 0 counts as 1 byte.
    pub fn new(objects: impl IntoIterator<Item = (u64, u64)>) -> Targets {
        let mut ranges: Vec<(u64, u64)> = objects
            .into_iter()
            .map(|(p, size)| (p, p.saturating_add(size.max(1))))
            .collect();
        ranges.sort_unstable();
        ranges.dedup_by_key(|r| r.0);
        Targets { ranges }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The start of the object `word` points into, if any.
    pub fn find(&self, word: u64) -> Option<u64> {
        let first = self.ranges.first()?;
        if word < first.0 {
            return None;
        }
        let i = self.ranges.partition_point(|r| r.0 <= word);
        let (start, end) = self.ranges[i - 1];
        (word < end).then_some(start)
    }
}

/// Holders kept per object: the first ones seen (enough to find one that counts).
pub const MAX_HOLDERS: usize = 8;

/// The references found so far, by object start: the first holders seen of each.
#[derive(Clone, Debug, Default)]
pub struct Found {
    pub by_object: BTreeMap<u64, Vec<Holder>>,
    /// Bytes scanned, and bytes that could not be read.
    pub scanned: u64,
    pub unreadable: u64,
}

/// Looks at every aligned 8-byte word of `bytes`, read at kernel address `base` in
/// `region`, for pointers into `targets`. A word that is the object's own address is
/// skipped (an object inside a scanned region is not its own referrer).
pub fn scan(targets: &Targets, region: &str, base: u64, bytes: &[u8], found: &mut Found) {
    found.scanned += bytes.len() as u64;
    // Words are aligned in the kernel's address space, whatever the buffer's alignment.
    let skip = ((8 - (base % 8)) % 8) as usize;
    let Some(aligned) = bytes.get(skip..) else {
        return;
    };
    for (i, w) in aligned.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        // Kernel addresses only (from 0xff00…: with 5-level paging the direct map starts at
        // 0xff11…): most words are small numbers.
        if word < 0xff00_0000_0000_0000 {
            continue;
        }
        if let Some(start) = targets.find(word) {
            let at = base + (skip + i * 8) as u64;
            if (start..start.saturating_add(8)).contains(&at) {
                continue;
            }
            let holders = found.by_object.entry(start).or_default();
            if holders.len() < MAX_HOLDERS {
                holders.push(Holder {
                    at,
                    region: region.to_string(),
                });
            }
        }
    }
}

/// The kernel image's data sections from `/proc/iomem` (physical addresses, read as root:
/// `Kernel code`, `Kernel data`, `Kernel bss`), moved to virtual ones by the offset that
/// takes the start of `Kernel code` to `_text` (from kallsyms). None when iomem does not
/// say (not root: every address reads 0).
pub fn kernel_regions(iomem: &str, text: u64) -> Option<Vec<Region>> {
    let mut code = None;
    let mut out = vec![];
    for line in iomem.lines() {
        let Some((range, name)) = line.trim().split_once(" : ") else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        match name.trim() {
            "Kernel code" => code = Some(a),
            "Kernel data" => out.push(("kernel .data", a, b + 1)),
            "Kernel bss" => out.push(("kernel .bss", a, b + 1)),
            _ => {}
        }
    }
    let code = code.filter(|&c| c != 0)?;
    let shift = text.wrapping_sub(code);
    let regions: Vec<Region> = out
        .into_iter()
        .filter(|(_, a, b)| b > a)
        .map(|(name, a, b)| Region {
            name: name.to_string(),
            start: a.wrapping_add(shift),
            end: b.wrapping_add(shift),
        })
        .collect();
    (!regions.is_empty()).then_some(regions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K: u64 = 0xffff_8880_0000_0000;

    /// With 5-level paging (qemu's `-cpu max`), kmalloc addresses look like this.
    #[test]
    fn five_level_paging_addresses_are_kernel_addresses() {
        let obj = 0xff16_ea3a_8ac3_9f60;
        let t = Targets::new([(obj, 96)]);
        let mut f = Found::default();
        scan(&t, "r", 0xffff_ffff_c000_0000, &obj.to_le_bytes(), &mut f);
        assert_eq!(f.by_object.len(), 1);
    }

    #[test]
    fn words_pointing_into_objects_are_found_with_their_place() {
        let t = Targets::new([(K + 0x100, 64), (K + 0x1000, 8)]);
        let mut mem = vec![0u8; 64];
        mem[8..16].copy_from_slice(&(K + 0x110).to_le_bytes()); // inside the first
        mem[16..24].copy_from_slice(&(K + 0x140).to_le_bytes()); // just past it
        mem[32..40].copy_from_slice(&(K + 0x1000).to_le_bytes());
        let mut f = Found::default();
        scan(&t, "kernel .bss", 0xffff_ffff_8300_0000, &mem, &mut f);
        assert_eq!(f.by_object.len(), 2);
        assert_eq!(f.by_object[&(K + 0x100)][0].at, 0xffff_ffff_8300_0008);
        assert_eq!(f.by_object[&(K + 0x1000)][0].at, 0xffff_ffff_8300_0020);
        assert_eq!(f.by_object[&(K + 0x1000)][0].region, "kernel .bss");
        assert_eq!(f.scanned, 64);
    }

    #[test]
    fn unaligned_buffers_read_aligned_words() {
        let t = Targets::new([(K, 16)]);
        let mut mem = vec![0u8; 24];
        // The buffer starts 4 bytes before an aligned kernel address.
        mem[4..12].copy_from_slice(&K.to_le_bytes());
        let mut f = Found::default();
        scan(&t, "r", 0xffff_ffff_8300_0004, &mem, &mut f);
        assert_eq!(f.by_object[&K][0].at, 0xffff_ffff_8300_0008);
    }

    #[test]
    fn an_object_does_not_reference_itself() {
        let t = Targets::new([(K, 64)]);
        let mem = K.to_le_bytes();
        let mut f = Found::default();
        scan(&t, "r", K, &mem, &mut f);
        assert!(f.by_object.is_empty());
    }

    #[test]
    fn iomem_gives_the_kernels_data_and_bss_at_their_virtual_addresses() {
        let iomem = "00000000-00000fff : Reserved\n\
                     00100000-bffdffff : System RAM\n  \
                     01000000-02259aff : Kernel code\n  \
                     02400000-02dfdfff : Kernel rodata\n  \
                     02e00000-0307a57f : Kernel data\n  \
                     03928000-03a59fff : Kernel bss\n";
        let r = kernel_regions(iomem, 0xffff_ffff_8100_0000).unwrap();
        assert_eq!(
            r,
            vec![
                Region {
                    name: "kernel .data".into(),
                    start: 0xffff_ffff_82e0_0000,
                    end: 0xffff_ffff_8307_a580
                },
                Region {
                    name: "kernel .bss".into(),
                    start: 0xffff_ffff_8392_8000,
                    end: 0xffff_ffff_83a5_a000
                },
            ]
        );
        // Not root: iomem shows zeroes.
        let hidden = "00000000-00000000 : Kernel code\n00000000-00000000 : Kernel data\n";
        assert_eq!(kernel_regions(hidden, 0xffff_ffff_8100_0000), None);
    }

    proptest! {
        /// `find` agrees with a linear search over disjoint objects.
        #[test]
        fn find_matches_a_linear_search(
            objs in proptest::collection::btree_map(0u64..10_000, 1u64..64, 0..40),
            probes in proptest::collection::vec(0u64..10_100, 0..100),
        ) {
            // Make them disjoint: each ends before the next starts.
            let mut list: Vec<(u64, u64)> = vec![];
            let mut last_end = 0;
            for (s, n) in objs {
                let s = s * 64;
                if s >= last_end {
                    list.push((K + s, n));
                    last_end = s + n;
                }
            }
            let t = Targets::new(list.clone());
            for p in probes {
                let w = K + p * 7;
                let want = list.iter().find(|(s, n)| w >= *s && w < s + n).map(|(s, _)| *s);
                prop_assert_eq!(t.find(w), want);
            }
        }
    }
}
