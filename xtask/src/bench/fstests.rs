//! The bench's fstests workload: fstests' quick list on xfs (the fstests tier's build and
//! loop devices), untraced `./check` against `tracer run -- ./check`, at the default
//! settings and with allocation tracking (`--alloc-filter sym:xfs_`). Whole runs, so the
//! fixed costs (attach, linger, leak grace, detach) a developer pays on every `tracer run`
//! of one test are in the figure. And `./check` beside `tracer attach --floor` (count-only
//! programs on the default mode's points): what the kernel charges for those points being
//! attached at all, which no work of ours in the programs or in userspace can take back.
//! Wall-time ratios, traced over untraced of the same round; medians with min-max. Never
//! asserts a timing.

use std::{path::Path, process::Command};

use anyhow::Result;
use serde_json::{Value, json};

use crate::{
    fstests::{self, Fstyp},
    setup, util,
};

/// The quick list (the tests #16 measured).
pub const QUICK: &[&str] = &[
    "generic/001",
    "generic/002",
    "generic/005",
    "generic/006",
    "generic/007",
    "generic/013",
];

const CONFIGS: &[&str] = &["untraced", "floor", "default", "alloc"];

/// The runs of every configuration, `rounds` times (the order rotates each round).
pub fn measure(tracer: &Path, rounds: usize) -> Result<Value> {
    setup::ensure_fstests_deps()?;
    let base = util::target_dir().join("fstests");
    let (tree, mut devices) = fstests::prepare(&base, Fstyp::Xfs)?;
    let results = base.join("bench-results");
    // walls[config][round]
    let mut walls: Vec<Vec<f64>> = vec![vec![]; CONFIGS.len()];
    for round in 0..rounds {
        for k in 0..CONFIGS.len() {
            util::check_interrupted()?;
            let c = (k + round) % CONFIGS.len();
            eprintln!(
                "bench: round {}/{rounds}: fstests {}",
                round + 1,
                CONFIGS[c]
            );
            // The floor's programs are attached around an untraced check.
            let floor = match CONFIGS[c] {
                "floor" => Some(super::Traced::start("floor", tracer, Path::new(""))?),
                _ => None,
            };
            let mut cmd = match CONFIGS[c] {
                "untraced" | "floor" => Command::new("./check"),
                config => {
                    // The round's recording and report go beside its results (the last
                    // round's are kept), not into the fstests tree where check runs.
                    let record = results.join(format!("{config}.trace"));
                    let report = results.join(format!("{config}.report.json"));
                    std::fs::create_dir_all(&results)?;
                    let _ = std::fs::remove_file(&record);
                    let _ = std::fs::remove_file(&report);
                    let mut cmd = Command::new(tracer);
                    cmd.args(["run", "--format", "json", "--record"])
                        .arg(&record)
                        .arg("--report")
                        .arg(&report);
                    if config == "alloc" {
                        cmd.args(["--alloc-filter", "sym:xfs_"]);
                    }
                    cmd.args(["--", "./check"]);
                    cmd
                }
            };
            cmd.args(QUICK);
            let wall = fstests::run_check(&mut cmd, &tree, &results.join(CONFIGS[c]), "12")?;
            if let Some(t) = floor {
                t.stop()?;
            }
            walls[c].push(wall.as_secs_f64());
        }
    }
    devices.teardown();
    let untraced = &walls[0];
    let mut out = serde_json::Map::new();
    out.insert("tests".into(), json!(QUICK));
    out.insert("rounds".into(), json!(rounds));
    out.insert(
        "untraced_s_median".into(),
        json!(super::median_min_max(untraced.clone()).map(|m| m.0)),
    );
    for (c, w) in CONFIGS.iter().zip(&walls).skip(1) {
        let ratios: Vec<f64> = w.iter().zip(untraced).map(|(t, u)| t / u).collect();
        let (rm, rmin, rmax) = super::median_min_max(ratios).unwrap_or_default();
        let secs = super::median_min_max(w.clone()).map_or(0.0, |m| m.0);
        out.insert(
            (*c).into(),
            json!({ "wall_ratio_median": rm, "wall_ratio_min": rmin, "wall_ratio_max": rmax,
                    "wall_s_median": secs }),
        );
    }
    Ok(Value::Object(out))
}

/// One line per traced configuration.
pub fn print(v: &Value) {
    println!(
        "fstests quick list ({} tests, {} rounds): untraced {:.1} s",
        v["tests"].as_array().map_or(0, Vec::len),
        v["rounds"],
        v["untraced_s_median"].as_f64().unwrap_or(0.0)
    );
    for c in &CONFIGS[1..] {
        let r = &v[*c];
        println!(
            "  {c:<8} wall ratio {:.3} [{:.3}-{:.3}], {:.1} s",
            r["wall_ratio_median"].as_f64().unwrap_or(0.0),
            r["wall_ratio_min"].as_f64().unwrap_or(0.0),
            r["wall_ratio_max"].as_f64().unwrap_or(0.0),
            r["wall_s_median"].as_f64().unwrap_or(0.0),
        );
    }
}
