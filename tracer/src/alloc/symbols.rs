//! Kernel text symbols with their lengths, for `symbol+0xoff/0xlen` frames and for the
//! filter's address ranges; resolved frames are cached. Built from `/proc/kallsyms`, which
//! covers vmlinux and loaded modules alike (module symbols carry `[module]`).

use std::{cell::RefCell, collections::HashMap};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sym {
    pub addr: u64,
    /// Up to the next symbol at a higher address.
    pub len: u64,
    pub name: String,
    pub module: Option<String>,
}

/// Text symbols sorted by address (aliases at one address kept, each with the same length).
#[derive(Debug, Default)]
pub struct SymTable {
    pub syms: Vec<Sym>,
    cache: RefCell<HashMap<u64, String>>,
}

/// Length given to the last symbol, which has no successor.
const LAST_LEN: u64 = 4096;

impl SymTable {
    pub fn load() -> Result<Self> {
        let text = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        let t = Self::parse(&text);
        if t.syms.is_empty() {
            bail!("/proc/kallsyms shows no addresses (kptr_restrict?): run tracer as root");
        }
        Ok(t)
    }

    pub fn parse(text: &str) -> Self {
        let mut syms = Vec::new();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(addr), Some(ty), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if !matches!(ty, "t" | "T" | "w" | "W") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if addr == 0 {
                continue;
            }
            let module = it
                .next()
                .map(|m| m.trim_matches(|c| c == '[' || c == ']').to_string());
            syms.push(Sym {
                addr,
                len: 0,
                name: name.to_string(),
                module,
            });
        }
        syms.sort_by(|a, b| a.addr.cmp(&b.addr).then_with(|| a.name.cmp(&b.name)));
        let mut i = 0;
        while i < syms.len() {
            let mut j = i;
            while j < syms.len() && syms[j].addr == syms[i].addr {
                j += 1;
            }
            let len = syms.get(j).map_or(LAST_LEN, |n| n.addr - syms[i].addr);
            for s in &mut syms[i..j] {
                s.len = len;
            }
            i = j;
        }
        SymTable {
            syms,
            cache: RefCell::default(),
        }
    }

    /// The symbol containing `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&Sym> {
        let mut i = self
            .syms
            .partition_point(|s| s.addr <= addr)
            .checked_sub(1)?;
        // Of aliases at one address, the first by name.
        while i > 0 && self.syms[i - 1].addr == self.syms[i].addr {
            i -= 1;
        }
        let s = &self.syms[i];
        (addr < s.addr + s.len).then_some(s)
    }

    /// `symbol+0xoff/0xlen`, with ` [module]` for module code; the raw address otherwise.
    pub fn frame(&self, addr: u64) -> String {
        if let Some(s) = self.cache.borrow().get(&addr) {
            return s.clone();
        }
        let s = match self.lookup(addr) {
            Some(s) => {
                let m = s
                    .module
                    .as_ref()
                    .map(|m| format!(" [{m}]"))
                    .unwrap_or_default();
                format!("{}+{:#x}/{:#x}{m}", s.name, addr - s.addr, s.len)
            }
            None => format!("{addr:#x}"),
        };
        self.cache.borrow_mut().insert(addr, s.clone());
        s
    }

    /// The name of the function containing `addr`, if known.
    pub fn function(&self, addr: u64) -> Option<&str> {
        self.lookup(addr).map(|s| s.name.as_str())
    }
}

/// Drops the frames above the allocation's caller (the tracepoint and allocator frames) when
/// the call site's function is on the stack; keeps the stack whole otherwise.
pub fn trim_to_call_site(frames: &[u64], call_site: u64, syms: &SymTable) -> Vec<u64> {
    if let Some(i) = frames.iter().position(|&f| f == call_site) {
        return frames[i..].to_vec();
    }
    let site_fn = syms.lookup(call_site).map(|s| s.addr);
    if site_fn.is_some()
        && let Some(i) = frames
            .iter()
            .position(|&f| syms.lookup(f).map(|s| s.addr) == site_fn)
    {
        return frames[i..].to_vec();
    }
    frames.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "ffffffff81000000 T _text\n\
        ffffffff81000100 t kmalloc_trace\n\
        ffffffff81000200 t xfs_alloc\n\
        ffffffff81000200 t xfs_alloc_alias\n\
        ffffffff81000300 t helper\n\
        ffffffff82000000 D data\n\
        ffffffffc0000000 t mod_fn\t[mymod]\n";

    #[test]
    fn frames_with_lengths() {
        let t = SymTable::parse(TEXT);
        assert_eq!(t.frame(0xffffffff81000210), "xfs_alloc+0x10/0x100");
        assert_eq!(t.frame(0xffffffffc0000004), "mod_fn+0x4/0x1000 [mymod]");
        assert_eq!(t.frame(0x10), "0x10");
        assert_eq!(t.function(0xffffffff81000301), Some("helper"));
        // Cached the second time.
        assert_eq!(t.frame(0xffffffff81000210), "xfs_alloc+0x10/0x100");
    }

    #[test]
    fn trims_allocator_frames() {
        let t = SymTable::parse(TEXT);
        let frames = [0xffffffff81000110, 0xffffffff81000220, 0xffffffff81000310];
        assert_eq!(
            trim_to_call_site(&frames, 0xffffffff81000220, &t),
            frames[1..].to_vec()
        );
        // Another return address inside the same function still trims.
        assert_eq!(
            trim_to_call_site(&frames, 0xffffffff81000230, &t),
            frames[1..].to_vec()
        );
        assert_eq!(trim_to_call_site(&frames, 0x5, &t), frames.to_vec());
    }
}
