//! `/proc/slabinfo`: which slab caches exist under their own name.
//!
//! SLUB merges caches of like size and flags; a merged cache's `struct kmem_cache` carries
//! the first one's name, and the others (aliases) are listed nowhere in slabinfo. A free
//! from an alias is indistinguishable from its host's, so the programs cannot learn it.

use std::collections::HashSet;

use anyhow::{Context, Result};

/// The names slabinfo lists: caches of their own, merged or not.
pub fn cache_names() -> Result<HashSet<String>> {
    let text = std::fs::read_to_string("/proc/slabinfo").context("reading /proc/slabinfo")?;
    Ok(parse_names(&text))
}

/// Names from slabinfo's text: the first column of each line after its two headers.
pub fn parse_names(text: &str) -> HashSet<String> {
    text.lines()
        .filter(|l| !l.starts_with("slabinfo") && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_skip_the_headers_and_keep_the_first_column() {
        let text = "slabinfo - version: 2.1\n\
            # name            <active_objs> <num_objs> <objsize>\n\
            filp                 441    441    192   21    1 : tunables    0    0    0\n\
            files_cache          163    184    704   23    4 : tunables    0    0    0\n";
        let names = parse_names(text);
        assert_eq!(names.len(), 2);
        assert!(names.contains("filp") && names.contains("files_cache"));
        assert!(!names.contains("fs_cache"));
    }
}
