//! Symbols of kernel modules loaded after the attach, from their `.ko` files (the `object`
//! crate), so that backtraces through a module name its functions even when the module was
//! unloaded before the report.
//!
//! `/proc/kallsyms` is read once at attach; a module loaded later is not in it. Each stats
//! tick, `ModuleSyms::refresh` lists `/sys/module/*/sections/.text` (one small read per
//! loadable module): a module whose text base is new is loaded or reloaded, and its
//! symbols are computed then, while it is loaded: each function of the `.ko` at its
//! section's address (`/sys/module/<m>/sections/<section>`) with its ELF size. The `.ko` is
//! looked for under `/lib/modules/$(uname -r)` (`.ko` or `.ko.zst`) and in `/lib/modules`;
//! when there is none, the module's lines of a fresh `/proc/kallsyms` stand in.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

use crate::kernel::kallsyms::{Kallsyms, Symbol};

/// A function of a relocatable module object: its section, and its place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfFunction {
    pub section: String,
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// The functions defined in a module object (`.ko` bytes), with their section and offset.
pub fn elf_functions(data: &[u8]) -> Result<Vec<ElfFunction>> {
    let file = object::File::parse(data).context("parsing the module's ELF")?;
    if file.kind() != object::ObjectKind::Relocatable {
        bail!("not a relocatable object (a .ko is one)");
    }
    let mut out = vec![];
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text || !sym.is_definition() {
            continue;
        }
        let Some(idx) = sym.section_index() else {
            continue;
        };
        let Ok(sec) = file.section_by_index(idx) else {
            continue;
        };
        if sec.kind() != SectionKind::Text {
            continue;
        }
        let (Ok(name), Ok(section)) = (sym.name(), sec.name()) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        out.push(ElfFunction {
            section: section.to_string(),
            name: name.to_string(),
            offset: sym.address(),
            size: sym.size(),
        });
    }
    Ok(out)
}

/// Places a module's functions at its sections' load addresses (`sections`: name ->
/// address, as in `/sys/module/<m>/sections/`); functions of sections not loaded (e.g.
/// `.init.text` after init) are left out.
pub fn place(module: &str, funcs: &[ElfFunction], sections: &HashMap<String, u64>) -> Vec<Symbol> {
    let mut out: Vec<Symbol> = funcs
        .iter()
        .filter_map(|f| {
            let base = sections.get(&f.section)?;
            Some(Symbol {
                addr: base + f.offset,
                len: f.size.max(1),
                name: f.name.clone(),
                module: Some(module.to_string()),
            })
        })
        .collect();
    out.sort_by(|a, b| a.addr.cmp(&b.addr).then_with(|| a.name.cmp(&b.name)));
    out
}

/// The load addresses of a module's sections, from `<sys_module>/<module>/sections/`.
pub fn section_addrs(sys_module: &Path, module: &str) -> Result<HashMap<String, u64>> {
    let dir = sys_module.join(module).join("sections");
    let mut out = HashMap::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if let Ok(a) = u64::from_str_radix(text.trim().trim_start_matches("0x"), 16)
            && a != 0
        {
            out.insert(name, a);
        }
    }
    Ok(out)
}

/// The `.ko` of `module` under `dirs` (recursively for the first), `-` and `_` alike.
pub fn find_ko(dirs: &[PathBuf], module: &str) -> Option<PathBuf> {
    let want = module.replace('-', "_");
    let matches = |p: &Path| {
        let f = p.file_name()?.to_str()?;
        let stem = f
            .strip_suffix(".ko")
            .or_else(|| f.strip_suffix(".ko.zst"))?;
        (stem.replace('-', "_") == want).then_some(())
    };
    for (i, d) in dirs.iter().enumerate() {
        let mut stack = vec![d.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() && i == 0 {
                    stack.push(p);
                } else if ft.is_file() && matches(&p).is_some() {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// Reads a `.ko` (or `.ko.zst`) and returns its functions.
pub fn read_ko(path: &Path) -> Result<Vec<ElfFunction>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let data = if path.extension().is_some_and(|e| e == "zst") {
        zstd::decode_all(&raw[..]).with_context(|| format!("decompressing {}", path.display()))?
    } else {
        raw
    };
    elf_functions(&data).with_context(|| path.display().to_string())
}

/// Modules loaded after the attach (or reloaded elsewhere), with their symbols.
#[derive(Debug, Default)]
pub struct ModuleSyms {
    sys_module: PathBuf,
    ko_dirs: Vec<PathBuf>,
    /// Module -> text base seen last (also for those kallsyms covered at attach).
    bases: HashMap<String, u64>,
    /// Symbols of the modules learnt here, by address.
    syms: Vec<Symbol>,
    pub notes: Vec<String>,
}

impl ModuleSyms {
    /// Watches `/sys/module` with the `.ko` files of the running kernel.
    pub fn system() -> Self {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Self::new(
            PathBuf::from("/sys/module"),
            vec![
                Path::new("/lib/modules").join(release),
                PathBuf::from("/lib/modules"),
            ],
        )
    }

    pub fn new(sys_module: PathBuf, ko_dirs: Vec<PathBuf>) -> Self {
        ModuleSyms {
            sys_module,
            ko_dirs,
            ..Default::default()
        }
    }

    /// Notes the text base of every loaded module; `first`: at attach, when kallsyms covers
    /// them all and nothing is read. Returns the modules learnt.
    pub fn refresh(&mut self, first: bool) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.sys_module) else {
            return vec![];
        };
        let mut fresh = vec![];
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(text) = std::fs::read_to_string(e.path().join("sections/.text")) else {
                continue;
            };
            let Ok(base) = u64::from_str_radix(text.trim().trim_start_matches("0x"), 16) else {
                continue;
            };
            if self.bases.insert(name.clone(), base) != Some(base) && !first {
                fresh.push(name);
            }
        }
        let mut fallback = vec![];
        for m in &fresh {
            match self.learn_from_ko(m) {
                Ok(()) => {}
                Err(e) => fallback.push((m.clone(), e)),
            }
        }
        if !fallback.is_empty() {
            let k = Kallsyms::load().unwrap_or_default();
            for (m, e) in fallback {
                let mine: Vec<Symbol> = k
                    .symbols()
                    .iter()
                    .filter(|s| s.module.as_deref() == Some(m.as_str()))
                    .cloned()
                    .collect();
                if mine.is_empty() {
                    self.notes
                        .push(format!("module {m}: no symbols ({e:#}; not in kallsyms)"));
                } else {
                    self.replace(&m, mine);
                }
            }
        }
        fresh
    }

    fn learn_from_ko(&mut self, module: &str) -> Result<()> {
        let ko = find_ko(&self.ko_dirs, module)
            .with_context(|| format!("no {module}.ko under /lib/modules"))?;
        let funcs = read_ko(&ko)?;
        let sections = section_addrs(&self.sys_module, module)?;
        let syms = place(module, &funcs, &sections);
        if syms.is_empty() {
            bail!("{} places no function", ko.display());
        }
        self.replace(module, syms);
        Ok(())
    }

    /// Adds a module's symbols, dropping its earlier ones and any overlapping them.
    pub fn replace(&mut self, module: &str, syms: Vec<Symbol>) {
        let (lo, hi) = match (syms.first(), syms.last()) {
            (Some(a), Some(b)) => (a.addr, b.addr + b.len),
            _ => return,
        };
        self.syms.retain(|s| {
            s.module.as_deref() != Some(module) && (s.addr + s.len <= lo || s.addr >= hi)
        });
        self.syms.extend(syms);
        self.syms
            .sort_by(|a, b| a.addr.cmp(&b.addr).then_with(|| a.name.cmp(&b.name)));
    }

    /// The learnt symbol containing `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&Symbol> {
        let i = self
            .syms
            .partition_point(|s| s.addr <= addr)
            .checked_sub(1)?;
        let s = &self.syms[i];
        (addr < s.addr + s.len).then_some(s)
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real module of the VM tier's kernel (Debian's 6.1 cloud kernel), when downloaded.
    fn vm_xfs_ko() -> Option<PathBuf> {
        // <target>/debug/deps/<test binary>: the VM kernel is unpacked in <target>/vm-cache.
        let exe = std::env::current_exe().ok()?;
        let target = exe.parent()?.parent()?.parent()?;
        let modules = target.join("vm-cache/kernel/lib/modules");
        std::fs::read_dir(modules)
            .ok()?
            .flatten()
            .find_map(|e| find_ko(&[e.path()], "xfs"))
    }

    #[test]
    fn symbolizes_a_real_module() {
        let Some(ko) = vm_xfs_ko() else {
            eprintln!("skipped: no xfs.ko of the VM kernel (cargo xtask vm-test downloads it)");
            return;
        };
        let funcs = read_ko(&ko).unwrap();
        let fill = funcs
            .iter()
            .find(|f| f.name == "xfs_fs_fill_super")
            .expect("xfs_fs_fill_super in xfs.ko");
        assert!(fill.section.starts_with(".text"), "{fill:?}");
        assert!(fill.size > 16, "{fill:?}");
        // Placed at made-up section addresses, as /sys/module/xfs/sections would give.
        let mut sections = HashMap::new();
        let mut base = 0xffff_ffff_c000_0000u64;
        let mut names: Vec<&str> = funcs.iter().map(|f| f.section.as_str()).collect();
        names.sort();
        names.dedup();
        for n in names {
            sections.insert(n.to_string(), base);
            base += 0x100_0000;
        }
        let mut m = ModuleSyms::default();
        m.replace("xfs", place("xfs", &funcs, &sections));
        let at = sections[&fill.section] + fill.offset + 5;
        let s = m.lookup(at).unwrap();
        assert_eq!(s.name, "xfs_fs_fill_super");
        assert_eq!(s.module.as_deref(), Some("xfs"));
        assert_eq!(s.len, fill.size);
        // Past the end of the function's section: nothing.
        assert!(m.lookup(0xffff_ffff_b000_0000).is_none());
    }

    #[test]
    fn rejects_what_is_not_a_module() {
        assert!(elf_functions(b"not an elf").is_err());
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(elf_functions(&me).is_err());
    }

    #[test]
    fn replacing_a_reloaded_module_drops_its_old_symbols() {
        let sym = |addr, name: &str| Symbol {
            addr,
            len: 0x10,
            name: name.into(),
            module: Some("m".into()),
        };
        let mut m = ModuleSyms::default();
        m.replace("m", vec![sym(0x1000, "a"), sym(0x1010, "b")]);
        m.replace("m", vec![sym(0x5000, "a")]);
        assert!(m.lookup(0x1004).is_none());
        assert_eq!(m.lookup(0x5004).unwrap().name, "a");
    }
}
