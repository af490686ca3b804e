//! Percpu allocations (`alloc_percpu()` / `free_percpu()`), tracked like slab objects
//! through the `percpu:percpu_alloc_percpu` / `percpu_free_percpu` raw tracepoints. Their
//! programs are attached only with tracking on, after their argument types are checked
//! against the running kernel's BTF (`call_site` came with Linux 5.19).

use anyhow::{Result, anyhow, bail};
use aya::{Ebpf, programs::RawTracePoint};

use crate::kernel::btf::KernelBtf;

/// Argument index and type a program reads.
type Args = &'static [(usize, &'static str)];

/// (raw tracepoint, program, the arguments it reads).
const POINTS: &[(&str, &str, Args)] = &[
    (
        "percpu_alloc_percpu",
        "raw_percpu_alloc",
        &[(0, "long unsigned int"), (7, "void *"), (8, "size_t")],
    ),
    ("percpu_free_percpu", "raw_percpu_free", &[(2, "void *")]),
    // After the program it stands in for when a free interrupts it (`free_twin`).
    (
        "percpu_free_percpu",
        "raw_percpu_free_twin",
        &[(2, "void *")],
    ),
];

/// Whether a BTF type description matches what the program assumes (`size_t` may show as
/// its underlying integer).
fn type_ok(have: &str, want: &str) -> bool {
    have == want || (want == "size_t" && have == "long unsigned int")
}

pub fn attach(ebpf: &mut Ebpf, kbtf: &KernelBtf) -> Result<()> {
    for (tp, _, args) in POINTS {
        let params = kbtf.tracepoint_params(tp)?;
        for (i, want) in *args {
            let have = params.get(*i).map(String::as_str).unwrap_or("none");
            if !type_ok(have, want) {
                bail!("{tp}: argument {i} is {have}, the program reads {want}");
            }
        }
    }
    for (tp, prog, _) in POINTS {
        let p: &mut RawTracePoint = ebpf
            .program_mut(prog)
            .ok_or_else(|| anyhow!("{prog} missing from the object"))?
            .try_into()?;
        p.load().map_err(|e| {
            anyhow!(
                "loading {prog}: {}",
                crate::attach::hooks::verifier_error(&e)
            )
        })?;
        p.attach(tp)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_t_may_be_spelt_as_its_integer() {
        assert!(type_ok("size_t", "size_t"));
        assert!(type_ok("long unsigned int", "size_t"));
        assert!(!type_ok("int", "size_t"));
        assert!(!type_ok("struct kmem_cache *", "void *"));
    }
}
