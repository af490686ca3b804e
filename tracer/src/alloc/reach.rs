//! The reachability scan before a leak report (kmemleak's rule, see `tracer_fs::reach`):
//! the kernel's `.data` and `.bss` (from `/proc/iomem`) and each module's writable data
//! (`struct module`, found at `/sys/module/<name>/sections/.gnu.linkonce.this_module`,
//! laid out as the running kernel's BTF says) are read through the `kmem_peek` iterator
//! and searched for the addresses of the tracked objects.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf,
    maps::{Array, MapData},
};
use tracer_fs::{
    reach::{self, Found, Region, Targets},
    wire::alloc::{PEEK_PIECE, PEEK_PIECES},
};

use super::iter::IterProgram;
use crate::{kernel::btf::KernelBtf, kernel::kallsyms::Kallsyms};

pub const PEEK_PROGRAM: &str = "kmem_peek";

/// More than this much global data is not read (a kernel's is a few MiB).
const MAX_SCAN_BYTES: u64 = 256 << 20;

/// Where `struct module` says its writable data is, on this kernel.
#[derive(Clone, Copy, Debug)]
enum ModuleLayout {
    /// 6.4 and later: `mem[MOD_DATA]`, a `struct module_memory { base; size; ... }`.
    Mem { at: u32, base: u32, size: u32 },
    /// Before: `core_layout` (`struct module_layout`), text, read-only and
    /// read-only-after-init first, then the data, up to `size`.
    Core {
        at: u32,
        base: u32,
        size: u32,
        ro_after_init: u32,
    },
}

impl ModuleLayout {
    fn of(btf: &KernelBtf) -> Result<Self> {
        if let Ok(mem) = btf.offset_of("module", &["mem"]) {
            let data = btf.enum_value("mod_mem_type", "MOD_DATA")?;
            let stride = btf.struct_size("module_memory")?;
            return Ok(ModuleLayout::Mem {
                at: mem + data * stride,
                base: btf.offset_of("module_memory", &["base"])?,
                size: btf.offset_of("module_memory", &["size"])?,
            });
        }
        let at = btf
            .offset_of("module", &["core_layout"])
            .context("struct module has neither mem nor core_layout")?;
        Ok(ModuleLayout::Core {
            at,
            base: btf.offset_of("module_layout", &["base"])?,
            size: btf.offset_of("module_layout", &["size"])?,
            ro_after_init: btf.offset_of("module_layout", &["ro_after_init_size"])?,
        })
    }

    /// Bytes of `struct module` to read for the fields.
    fn span(&self) -> u64 {
        match *self {
            ModuleLayout::Mem { at, base, size } => (at + base.max(size)) as u64 + 8,
            ModuleLayout::Core {
                at,
                base,
                size,
                ro_after_init,
            } => (at + base.max(size).max(ro_after_init)) as u64 + 8,
        }
    }

    /// The data range, from the bytes of `struct module`.
    fn data(&self, m: &[u8]) -> Option<(u64, u64)> {
        let u64_at = |o: u32| {
            Some(u64::from_le_bytes(
                m.get(o as usize..o as usize + 8)?.try_into().ok()?,
            ))
        };
        let u32_at = |o: u32| {
            Some(u32::from_le_bytes(m.get(o as usize..o as usize + 4)?.try_into().ok()?) as u64)
        };
        let (start, end) = match *self {
            ModuleLayout::Mem { at, base, size } => {
                let b = u64_at(at + base)?;
                (b, b + u32_at(at + size)?)
            }
            ModuleLayout::Core {
                at,
                base,
                size,
                ro_after_init,
            } => {
                let b = u64_at(at + base)?;
                (b + u32_at(at + ro_after_init)?, b + u32_at(at + size)?)
            }
        };
        (start != 0 && end > start && end - start < (64 << 20)).then_some((start, end))
    }
}

/// The scanner: the loaded reader and what it knows of the kernel's layout.
pub struct GlobalScan {
    prog: IterProgram,
    at: Array<MapData, u64>,
    kernel: Vec<Region>,
    modules: Option<ModuleLayout>,
    /// What is not scanned, and why (said once in each report).
    pub gaps: Vec<String>,
    /// What the first read at load covered, for the filter line.
    pub ready: String,
    /// kallsyms' data symbols, read for the regions (modules) of that time.
    names: Option<(Vec<String>, DataNames)>,
}

/// One scan's outcome.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    /// Where each object found referenced is held, by its address, in words.
    pub held: BTreeMap<u64, String>,
    /// One line for the report: what was read, what was not.
    pub summary: String,
}

impl GlobalScan {
    pub fn load(
        ebpf: &mut Ebpf,
        btf: &aya::Btf,
        kbtf: &KernelBtf,
        ksyms: &Kallsyms,
    ) -> Result<Self> {
        let prog = IterProgram::load(ebpf, btf, PEEK_PROGRAM, "bpf_map")?;
        let at = Array::try_from(
            ebpf.take_map("PEEK_AT")
                .ok_or_else(|| anyhow!("no PEEK_AT map in the object"))?,
        )?;
        let mut gaps = vec![];
        let text = ksyms.addrs("_text").first().copied().unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/iomem")
            .ok()
            .and_then(|s| reach::kernel_regions(&s, text))
            .unwrap_or_else(|| {
                gaps.push("the kernel's own data (no Kernel data/bss in /proc/iomem)".into());
                vec![]
            });
        let modules = match ModuleLayout::of(kbtf) {
            Ok(l) => Some(l),
            Err(e) => {
                gaps.push(format!("modules' data ({e:#})"));
                None
            }
        };
        let mut s = GlobalScan {
            prog,
            at,
            kernel,
            modules,
            gaps,
            ready: String::new(),
            names: None,
        };
        s.ready = s.first_read()?;
        Ok(s)
    }

    /// Reads every region once: whether they can be read at all, and how long it takes.
    fn first_read(&mut self) -> Result<String> {
        let t0 = std::time::Instant::now();
        let regions = self.regions();
        let (mut ok, mut bad) = (0u64, 0u64);
        for r in &regions {
            self.read(r.start, r.len().min(MAX_SCAN_BYTES), |_, b| match b {
                Some(b) => ok += b.len() as u64,
                None => bad += PEEK_PIECE as u64,
            })?;
        }
        if ok == 0 {
            return Err(anyhow!(
                "no global data could be read ({} regions, {} KiB unreadable)",
                regions.len(),
                bad >> 10
            ));
        }
        Ok(format!(
            "reachability scan: {} KiB of global data ({}) read in {} ms{}",
            ok >> 10,
            regions_text(&regions),
            t0.elapsed().as_millis(),
            if bad > 0 {
                format!(", {} KiB unreadable", bad >> 10)
            } else {
                String::new()
            }
        ))
    }

    /// Reads `len` bytes at `addr`: each piece with its bytes, or None where unreadable.
    fn read(
        &mut self,
        addr: u64,
        len: u64,
        mut each: impl FnMut(u64, Option<&[u8]>),
    ) -> Result<()> {
        let step = (PEEK_PIECE * PEEK_PIECES) as u64;
        let mut off = 0;
        while off < len {
            let n = step.min(len - off);
            self.at.set(0, addr + off, 0)?;
            self.at.set(1, n, 0)?;
            let out = self.prog.run()?;
            for (i, piece) in out.chunks(8 + PEEK_PIECE).enumerate() {
                if piece.len() < 8 + PEEK_PIECE {
                    return Err(anyhow!(
                        "kmem_peek wrote a short piece ({} bytes)",
                        piece.len()
                    ));
                }
                let at = addr + off + (i * PEEK_PIECE) as u64;
                let ok = piece[..8] == [0; 8];
                // The last piece may run past the range.
                let want = (addr + len - at).min(PEEK_PIECE as u64) as usize;
                each(at, ok.then(|| &piece[8..8 + want]));
            }
            off += n;
        }
        Ok(())
    }

    /// The regions of this moment: the kernel's, and every loaded module's data.
    fn regions(&mut self) -> Vec<Region> {
        let mut out = self.kernel.clone();
        let Some(layout) = self.modules else {
            return out;
        };
        let Ok(dir) = std::fs::read_dir("/sys/module") else {
            return out;
        };
        let mut names: Vec<String> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let Ok(s) = std::fs::read_to_string(format!(
                "/sys/module/{name}/sections/.gnu.linkonce.this_module"
            )) else {
                continue; // built in, or not readable
            };
            let Ok(this) = u64::from_str_radix(s.trim().trim_start_matches("0x"), 16) else {
                continue;
            };
            // From the start of its page: a piece that ran past the end of the module's
            // allocation into an unmapped page would fail whole.
            let page = this & !(PEEK_PIECE as u64 - 1);
            let mut bytes = vec![];
            let _ = self.read(page, this - page + layout.span(), |_, b| {
                bytes.extend_from_slice(b.unwrap_or(&[0; PEEK_PIECE]));
            });
            let bytes = bytes.get((this - page) as usize..).unwrap_or(&[]);
            if let Some((start, end)) = layout.data(bytes) {
                out.push(Region {
                    name: format!("module {name} data"),
                    start,
                    end,
                });
            }
        }
        out
    }

    /// Searches global data for the addresses of `objects` (`(address, size)`).
    pub fn scan(&mut self, objects: impl IntoIterator<Item = (u64, u64)>) -> Result<Scan> {
        let targets = Targets::new(objects);
        if targets.is_empty() {
            return Ok(Scan::default());
        }
        let regions = self.regions();
        let mut found = Found::default();
        let mut budget = MAX_SCAN_BYTES;
        let mut skipped = 0u64;
        for r in &regions {
            if r.len() > budget {
                skipped += r.len();
                continue;
            }
            budget -= r.len();
            let mut unreadable = 0;
            self.read(r.start, r.len(), |at, bytes| match bytes {
                Some(b) => reach::scan(&targets, &r.name, at, b, &mut found),
                None => unreadable += PEEK_PIECE as u64,
            })?;
            found.unreadable += unreadable;
        }
        // Reading kallsyms takes the kernel ~100 ms: only when something was found, and
        // once per set of modules (their data symbols come and go with them).
        let modules: Vec<String> = regions.iter().map(|r| r.name.clone()).collect();
        if !found.by_object.is_empty() && self.names.as_ref().is_none_or(|(m, _)| *m != modules) {
            self.names = Some((modules, DataNames::load()));
        }
        let empty = DataNames { syms: vec![] };
        let names = self.names.as_ref().map_or(&empty, |(_, n)| n);
        // In the kernel's own data only a word inside a global that kallsyms names counts:
        // a big unnamed array there is more likely an allocator's bookkeeping than an owner
        // (seen on 6.1: leakyfs's leaks found at 0x70 strides in the kernel's .bss, far from
        // any data symbol). A module's data is its own globals (named or not: 6.12's
        // kallsyms lists no module data symbols).
        let mut unnamed = 0;
        let held: BTreeMap<u64, String> = found
            .by_object
            .iter()
            .filter_map(|(obj, holders)| {
                // The first holder that counts (a module's, or a named global of the kernel).
                let named = holders.iter().find_map(|h| {
                    let start = regions
                        .iter()
                        .find(|r| r.name == h.region)
                        .map_or(h.at, |r| r.start);
                    names.describe(h.at, &h.region, start).or_else(|| {
                        h.region
                            .starts_with("module ")
                            .then(|| format!("{}+{:#x} ({:#x})", h.region, h.at - start, h.at))
                    })
                });
                if named.is_none() {
                    unnamed += 1;
                }
                Some((*obj, named?))
            })
            .collect();
        let mut summary = format!(
            "reachability: {} KiB of global data read ({}) for the addresses of tracked objects: {} found referenced",
            found.scanned >> 10,
            regions_text(&regions),
            held.len()
        );
        if unnamed > 0 {
            summary.push_str(&format!(
                "; {unnamed} more found in the kernel's data where kallsyms names nothing (not counted)"
            ));
        }
        if found.unreadable > 0 {
            summary.push_str(&format!(
                "; {} KiB could not be read",
                found.unreadable >> 10
            ));
        }
        if skipped > 0 {
            summary.push_str(&format!(
                "; {} KiB not read (over {} MiB)",
                skipped >> 10,
                MAX_SCAN_BYTES >> 20
            ));
        }
        if !self.gaps.is_empty() {
            summary.push_str(&format!("; not scanned: {}", self.gaps.join(", ")));
        }
        summary.push_str("; the heap, per-CPU data and stacks are not scanned");
        Ok(Scan { held, summary })
    }
}

/// `kernel .data, kernel .bss, 3 modules`.
fn regions_text(regions: &[Region]) -> String {
    let modules = regions
        .iter()
        .filter(|r| r.name.starts_with("module "))
        .count();
    let mut parts: Vec<String> = regions
        .iter()
        .filter(|r| !r.name.starts_with("module "))
        .map(|r| r.name.clone())
        .collect();
    if modules > 0 {
        parts.push(format!(
            "{modules} module{}",
            if modules == 1 { "" } else { "s" }
        ));
    }
    parts.join(", ")
}

/// Data symbols from kallsyms (`d`, `b` types; the kernel's own only with
/// CONFIG_KALLSYMS_ALL), to name where a reference is held.
struct DataNames {
    /// `(address, name, module)`, sorted by address.
    syms: Vec<(u64, String, Option<String>)>,
}

impl DataNames {
    fn load() -> DataNames {
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let mut syms: Vec<(u64, String, Option<String>)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let ty = it.next()?;
                if !matches!(ty, "d" | "D" | "b" | "B") || addr == 0 {
                    return None;
                }
                let name = it.next()?.to_string();
                let module = it
                    .next()
                    .map(|m| m.trim_matches(|c| c == '[' || c == ']').to_string());
                Some((addr, name, module))
            })
            .collect();
        syms.sort();
        DataNames { syms }
    }

    /// `leakyfs_table+0x0 [leakyfs] (module leakyfs data)`; None without a data symbol
    /// within 4 KiB below it.
    fn describe(&self, at: u64, region: &str, region_start: u64) -> Option<String> {
        let i = self.syms.partition_point(|s| s.0 <= at);
        let (addr, name, module) = i.checked_sub(1).map(|i| &self.syms[i])?;
        if *addr < region_start || at - addr >= 4096 {
            return None;
        }
        let m = module
            .as_ref()
            .map(|m| format!(" [{m}]"))
            .unwrap_or_default();
        Some(format!("{name}+{:#x}{m} ({region})", at - addr))
    }
}
