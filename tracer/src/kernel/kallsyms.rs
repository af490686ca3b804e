//! Kernel symbols from `/proc/kallsyms`: names of work functions, addresses of the
//! functions the programs follow, and (through `alloc::symbols::SymTable`) the frames of
//! allocation backtraces. Read once per attach; clones share the table.

use std::{fs, sync::Arc};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub addr: u64,
    /// Up to the next symbol at a higher address (`LAST_LEN` for the last one).
    pub len: u64,
    pub name: String,
    pub module: Option<String>,
}

/// Length given to the last symbol, which has no successor.
pub const LAST_LEN: u64 = 4096;

/// Text symbols sorted by address, then name (aliases at one address share a length).
#[derive(Debug, Default, Clone)]
pub struct Kallsyms {
    syms: Arc<Vec<Symbol>>,
    /// Indexes into `syms` sorted by name (then address): a map by name cost 8 MiB.
    by_name: Arc<Vec<u32>>,
}

impl Kallsyms {
    pub fn load() -> Result<Self> {
        let text = fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        let k = Self::parse(&text);
        if k.syms.is_empty() {
            bail!("/proc/kallsyms shows no addresses (kptr_restrict?): run tracer as root");
        }
        Ok(k)
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
            syms.push(Symbol {
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
        let mut by_name: Vec<u32> = (0..syms.len() as u32).collect();
        by_name.sort_by(|&a, &b| {
            let (a, b) = (&syms[a as usize], &syms[b as usize]);
            a.name.cmp(&b.name).then(a.addr.cmp(&b.addr))
        });
        Kallsyms {
            syms: Arc::new(syms),
            by_name: Arc::new(by_name),
        }
    }

    /// Every text symbol, by address.
    pub fn symbols(&self) -> &[Symbol] {
        &self.syms
    }

    /// The symbol containing `addr` (within its length); of aliases, the first by name.
    pub fn lookup(&self, addr: u64) -> Option<&Symbol> {
        let s = self.first_alias_at_or_below(addr)?;
        (addr < s.addr + s.len).then_some(s)
    }

    fn first_alias_at_or_below(&self, addr: u64) -> Option<&Symbol> {
        let mut i = self
            .syms
            .partition_point(|s| s.addr <= addr)
            .checked_sub(1)?;
        while i > 0 && self.syms[i - 1].addr == self.syms[i].addr {
            i -= 1;
        }
        self.syms.get(i)
    }

    /// Every address of text symbol `name` (static functions may repeat across files).
    pub fn addrs(&self, name: &str) -> Vec<u64> {
        let name_at = |i: &u32| self.syms[*i as usize].name.as_str();
        let from = self.by_name.partition_point(|i| name_at(i) < name);
        self.by_name[from..]
            .iter()
            .take_while(|i| name_at(i) == name)
            .map(|i| self.syms[*i as usize].addr)
            .collect()
    }

    /// The symbol containing `addr` and the offset into it.
    pub fn resolve(&self, addr: u64) -> Option<(&Symbol, u64)> {
        let s = self.first_alias_at_or_below(addr)?;
        Some((s, addr - s.addr))
    }

    pub fn len(&self) -> usize {
        self.syms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _text\nffffffff81229520 t io_fallback_req_func\n\
             ffffffff812299b0 t io_ring_exit_work\nffffffff82000000 D some_data\n\
             ffffffffc0000000 t xfs_fs_fill_super\t[xfs]\n0000000000000000 t zero\n",
        );
        assert_eq!(k.len(), 4);
        assert_eq!(k.addrs("io_ring_exit_work"), &[0xffffffff812299b0]);
        let (s, off) = k.resolve(0xffffffff812299b4).unwrap();
        assert_eq!((s.name.as_str(), off), ("io_ring_exit_work", 4));
        let (s, _) = k.resolve(0xffffffffc0000010).unwrap();
        assert_eq!(s.module.as_deref(), Some("xfs"));
        assert!(k.resolve(0x10).is_none());
        assert!(k.addrs("some_data").is_empty());
    }
}
