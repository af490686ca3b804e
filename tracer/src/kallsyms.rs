//! Kernel symbols from `/proc/kallsyms`: names of work functions, addresses of the
//! functions the programs follow.

use std::{collections::HashMap, fs};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone)]
pub struct Symbol {
    pub addr: u64,
    pub name: String,
    pub module: Option<String>,
}

/// Text symbols sorted by address.
#[derive(Debug, Default)]
pub struct Kallsyms {
    syms: Vec<Symbol>,
    by_name: HashMap<String, Vec<u64>>,
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
                name: name.to_string(),
                module,
            });
        }
        syms.sort_by_key(|s| s.addr);
        let mut by_name: HashMap<String, Vec<u64>> = HashMap::new();
        for s in &syms {
            by_name.entry(s.name.clone()).or_default().push(s.addr);
        }
        Kallsyms { syms, by_name }
    }

    /// Every address of text symbol `name` (static functions may repeat across files).
    pub fn addrs(&self, name: &str) -> &[u64] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The symbol containing `addr` and the offset into it.
    pub fn resolve(&self, addr: u64) -> Option<(&Symbol, u64)> {
        let i = self.syms.partition_point(|s| s.addr <= addr);
        let s = self.syms.get(i.checked_sub(1)?)?;
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
