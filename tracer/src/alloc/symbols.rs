//! Kernel text symbols for allocation backtraces: `symbol+0xoff/0xlen [module]` frames and
//! the filter's address ranges; resolved frames are cached. The symbols are the attach's
//! `/proc/kallsyms` (`crate::kernel::kallsyms::Kallsyms`, read once and shared), plus the modules
//! loaded after it, read from their `.ko` files (`module_syms`) while they are loaded, so
//! that frames of a module unloaded before the report still get names.
//!
//! Use (e.g. from a test): `SymTable::from_kallsyms(Kallsyms::load()?)`, then
//! `refresh_modules()` now and then while modules may come and go (the tracker does it on
//! every stats tick), and `frame(addr)` / `lookup(addr)`.

use std::{cell::RefCell, collections::HashMap};

use anyhow::{Result, bail};

use super::module_syms::ModuleSyms;
pub use crate::kernel::kallsyms::Symbol as Sym;
use crate::kernel::kallsyms::{Kallsyms, Symbol};

/// Text symbols by address, with the modules learnt since.
#[derive(Debug, Default)]
pub struct SymTable {
    ksyms: Kallsyms,
    modules: ModuleSyms,
    modules_watched: bool,
    cache: RefCell<HashMap<u64, String>>,
}

impl SymTable {
    /// Reads `/proc/kallsyms`; prefer `from_kallsyms` with the attach's table.
    pub fn load() -> Result<Self> {
        let k = Kallsyms::load()?;
        if k.is_empty() {
            bail!("/proc/kallsyms shows no addresses (kptr_restrict?): run tracer as root");
        }
        Ok(Self::from_kallsyms(k))
    }

    /// The attach's kallsyms (shared, not copied); modules loaded later are followed from
    /// the next `refresh_modules`.
    pub fn from_kallsyms(ksyms: Kallsyms) -> Self {
        let mut modules = ModuleSyms::system();
        modules.refresh(true);
        SymTable {
            ksyms,
            modules,
            modules_watched: true,
            cache: RefCell::default(),
        }
    }

    pub fn parse(text: &str) -> Self {
        SymTable {
            ksyms: Kallsyms::parse(text),
            ..Default::default()
        }
    }

    /// With module symbols from elsewhere (tests; a recorded table).
    pub fn with_modules(mut self, modules: ModuleSyms) -> Self {
        self.modules = modules;
        self.cache.borrow_mut().clear();
        self
    }

    /// The kallsyms part, by address.
    pub fn symbols(&self) -> &[Sym] {
        self.ksyms.symbols()
    }

    pub fn kallsyms(&self) -> &Kallsyms {
        &self.ksyms
    }

    /// Learns the modules loaded (or reloaded) since the last call; returns their names.
    pub fn refresh_modules(&mut self) -> Vec<String> {
        if !self.modules_watched {
            return vec![];
        }
        let fresh = self.modules.refresh(false);
        if !fresh.is_empty() {
            self.cache.borrow_mut().clear();
        }
        fresh
    }

    /// Notes about modules whose symbols could not be had.
    pub fn module_notes(&self) -> &[String] {
        &self.modules.notes
    }

    /// The symbol containing `addr`: a module learnt after the attach first (its place may
    /// have been another module's then), then kallsyms.
    pub fn lookup(&self, addr: u64) -> Option<&Symbol> {
        self.modules
            .lookup(addr)
            .or_else(|| self.ksyms.lookup(addr))
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
    fn a_module_loaded_later_wins_over_the_stale_table() {
        let mut m = ModuleSyms::default();
        m.replace(
            "leakyfs",
            vec![Symbol {
                addr: 0xffffffffc0000800,
                len: 0x40,
                name: "leakyfs_fs_alloc".into(),
                module: Some("leakyfs".into()),
            }],
        );
        let t = SymTable::parse(TEXT).with_modules(m);
        // kallsyms would have said mod_fn+0x810 (its length runs to the end of the table).
        assert_eq!(
            t.frame(0xffffffffc0000810),
            "leakyfs_fs_alloc+0x10/0x40 [leakyfs]"
        );
        assert_eq!(t.frame(0xffffffffc0000004), "mod_fn+0x4/0x1000 [mymod]");
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
