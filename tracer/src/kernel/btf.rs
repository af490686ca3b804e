//! Structure layouts and tracepoint prototypes from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`), so one binary runs on many kernels.

use std::{collections::HashMap, sync::Mutex};

use anyhow::{Context, Result, anyhow, bail};
use btf_rs::{Btf, Type};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

pub struct KernelBtf {
    btf: Btf,
    /// Structs found by name so far (None: not in the BTF). btf-rs's memory-mapped
    /// backend scans every type's name per lookup (about a millisecond here), and the
    /// attach asks for the same few dozen structs over a hundred times.
    structs: Mutex<HashMap<String, Option<btf_rs::Struct>>>,
}

impl KernelBtf {
    pub fn load() -> Result<Self> {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            bail!(
                "this kernel has no BTF ({VMLINUX_BTF} is missing): tracer reads structure \
                 layouts from it. Use a kernel built with CONFIG_DEBUG_INFO_BTF=y."
            );
        }
        // Read whole, then parsed: btf-rs's file reader asks sysfs for its position at
        // every type (125k lseeks, most of the attach's first second under strace).
        let btf = match Btf::from_file_with_backend(VMLINUX_BTF, btf_rs::Backend::Mmap) {
            Ok(b) => b,
            Err(_) => {
                let bytes =
                    std::fs::read(VMLINUX_BTF).with_context(|| format!("reading {VMLINUX_BTF}"))?;
                Btf::from_bytes(&bytes).with_context(|| format!("parsing {VMLINUX_BTF}"))?
            }
        };
        Ok(KernelBtf {
            btf,
            structs: Mutex::default(),
        })
    }

    fn strip(&self, mut t: Type) -> Result<Type> {
        // Follow typedefs and qualifiers to the type they name.
        for _ in 0..16 {
            match &t {
                Type::Typedef(_)
                | Type::Volatile(_)
                | Type::Const(_)
                | Type::Restrict(_)
                | Type::TypeTag(_) => {
                    t = self
                        .btf
                        .resolve_chained_type(t.as_btf_type().expect("qualifier"))?;
                }
                _ => return Ok(t),
            }
        }
        Ok(t)
    }

    fn struct_by_name(&self, name: &str) -> Result<btf_rs::Struct> {
        let mut known = self.structs.lock().unwrap_or_else(|e| e.into_inner());
        let found = known.entry(name.to_string()).or_insert_with(|| {
            self.btf
                .resolve_types_by_name(name)
                .unwrap_or_default()
                .into_iter()
                .find_map(|t| match t {
                    Type::Struct(s) if !s.members.is_empty() => Some(s),
                    _ => None,
                })
        });
        found
            .clone()
            .ok_or_else(|| anyhow!("struct {name} not found in the kernel's BTF"))
    }

    /// Finds member `name` of `s`, looking into anonymous structs/unions; returns its bit
    /// offset from the start of `s` and its type.
    fn find_member(&self, s: &btf_rs::Struct, name: &str, depth: u32) -> Option<(u32, Type)> {
        if depth > 8 {
            return None;
        }
        for m in &s.members {
            let mname = self.btf.resolve_name(m).unwrap_or_default();
            let mtype = self.btf.resolve_chained_type(m).ok()?;
            if mname == name {
                return Some((m.bit_offset(), mtype));
            }
            if mname.is_empty()
                && let Ok(Type::Struct(inner) | Type::Union(inner)) = self.strip(mtype)
                && let Some((off, t)) = self.find_member(&inner, name, depth + 1)
            {
                return Some((m.bit_offset() + off, t));
            }
        }
        None
    }

    /// Offset of per-CPU variable `name` in the per-CPU section (`.data..percpu`).
    pub fn percpu_var_offset(&self, name: &str) -> Result<u32> {
        for t in self.btf.resolve_types_by_name(".data..percpu")? {
            let Type::Datasec(sec) = t else { continue };
            for v in &sec.variables {
                if let Ok(Type::Var(var)) = self.btf.resolve_chained_type(v)
                    && self.btf.resolve_name(&var).is_ok_and(|n| n == name)
                {
                    return Ok(v.offset());
                }
            }
        }
        Err(anyhow!(
            "per-CPU variable {name} not found in the kernel's BTF"
        ))
    }

    /// Byte offset of a member path inside a struct: `offset_of("file", &["f_path", "mnt"])`.
    pub fn offset_of(&self, struct_name: &str, path: &[&str]) -> Result<u32> {
        let mut s = self.struct_by_name(struct_name)?;
        let mut bits = 0u32;
        for (i, name) in path.iter().enumerate() {
            let (off, t) = self
                .find_member(&s, name, 0)
                .ok_or_else(|| anyhow!("{struct_name} has no member {}", path[..=i].join(".")))?;
            bits += off;
            if i + 1 < path.len() {
                match self.strip(t)? {
                    Type::Struct(inner) | Type::Union(inner) => s = inner,
                    _ => bail!("{struct_name}.{} is not a struct", path[..=i].join(".")),
                }
            }
        }
        if !bits.is_multiple_of(8) {
            bail!("{struct_name}.{} is a bitfield", path.join("."));
        }
        Ok(bits / 8)
    }

    /// The value of enumerator `member` of `enum enum_name`.
    pub fn enum_value(&self, enum_name: &str, member: &str) -> Result<u32> {
        for t in self
            .btf
            .resolve_types_by_name(enum_name)
            .unwrap_or_default()
        {
            if let Type::Enum(e) = t
                && let Some(m) = e
                    .members
                    .iter()
                    .find(|m| self.btf.resolve_name(*m).is_ok_and(|n| n == member))
            {
                return Ok(m.val());
            }
        }
        Err(anyhow!(
            "enum {enum_name} has no {member} in the kernel's BTF"
        ))
    }

    /// Size in bytes of a struct.
    pub fn struct_size(&self, struct_name: &str) -> Result<u32> {
        Ok(self.struct_by_name(struct_name)?.size() as u32)
    }

    /// Number of elements of array member `name` of a struct.
    pub fn array_len(&self, struct_name: &str, name: &str) -> Result<u32> {
        let s = self.struct_by_name(struct_name)?;
        let (_, t) = self
            .find_member(&s, name, 0)
            .ok_or_else(|| anyhow!("{struct_name} has no member {name}"))?;
        match self.strip(t)? {
            Type::Array(a) => Ok(a.len() as u32),
            _ => bail!("{struct_name}.{name} is not an array"),
        }
    }

    /// The parameter types of tracepoint `name`'s `TP_PROTO` (from `btf_trace_<name>`),
    /// each described as a short C-like string (`struct kmem_cache *`, `int`, ...).
    pub fn tracepoint_params(&self, name: &str) -> Result<Vec<String>> {
        let typedef = format!("btf_trace_{name}");
        let t = self
            .btf
            .resolve_types_by_name(&typedef)
            .ok()
            .and_then(|v| v.into_iter().next())
            .ok_or_else(|| anyhow!("{typedef} not in BTF"))?;
        let Type::Ptr(p) = self.strip(t)? else {
            bail!("{typedef} is not a pointer")
        };
        let Type::FuncProto(proto) = self.btf.resolve_chained_type(&p)? else {
            bail!("{typedef} does not point to a function prototype")
        };
        // The first parameter is the tracepoint's private `void *__data`.
        proto
            .parameters
            .iter()
            .skip(1)
            .map(|param| self.describe(self.btf.resolve_chained_type(param)?))
            .collect()
    }

    fn describe(&self, t: Type) -> Result<String> {
        Ok(match self.strip(t)? {
            Type::Ptr(p) => match self.btf.resolve_chained_type(&p) {
                Ok(inner) => format!("{} *", self.describe(inner)?),
                Err(_) => "void *".to_string(),
            },
            Type::Struct(s) => format!("struct {}", self.btf.resolve_name(&s).unwrap_or_default()),
            Type::Union(s) => format!("union {}", self.btf.resolve_name(&s).unwrap_or_default()),
            Type::Int(i) => self.btf.resolve_name(&i).unwrap_or_default(),
            Type::FuncProto(_) => "fn".to_string(),
            Type::Void => "void".to_string(),
            other => format!("{other:?}").chars().take(24).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_offsets_from_this_kernel() {
        let Ok(btf) = KernelBtf::load() else {
            eprintln!("skipped: no kernel BTF on this machine");
            return;
        };
        // `struct path { struct vfsmount *mnt; struct dentry *dentry; }` in every kernel.
        assert_eq!(btf.offset_of("path", &["mnt"]).unwrap(), 0);
        assert_eq!(btf.offset_of("path", &["dentry"]).unwrap(), 8);
        let f_path = btf.offset_of("file", &["f_path"]).unwrap();
        assert_eq!(
            btf.offset_of("file", &["f_path", "dentry"]).unwrap(),
            f_path + 8
        );
        assert!(btf.offset_of("file", &["no_such_member"]).is_err());
        let params = btf.tracepoint_params("kfree").unwrap();
        assert_eq!(params.len(), 2, "{params:?}");
    }
}
