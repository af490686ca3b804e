//! The cross-run summary: run digests ([`super::digest`]) grouped per test across
//! recordings, machines and kernels. Pure: no files, no engine; the JSON report is this
//! type serialized (its schema: [`super::schema`]).

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::digest::{RunDigest, StoryDigest};

/// Version of the cross-run JSON report. Bump on any change a consumer could misread
/// (and regenerate `tracer/schema/cross-run-report.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// The value of `kind` in every cross-run report.
pub const REPORT_KIND: &str = "tracer-cross-run-report";

/// p50/p99/max of a set of durations (nearest rank: each is one of the values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl Percentiles {
    pub fn of(mut v: Vec<u64>) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_unstable();
        Percentiles {
            count: v.len() as u64,
            p50_ns: nearest_rank(&v, 50),
            p99_ns: nearest_rank(&v, 99),
            max_ns: *v.last().unwrap_or(&0),
        }
    }
}

/// The `p`th percentile of sorted `v` by the nearest-rank method: the smallest value with
/// at least p% of the values at or below it.
pub fn nearest_rank(v: &[u64], p: u32) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let n = v.len();
    let rank = (p as usize * n).div_ceil(100).clamp(1, n);
    v[rank - 1]
}

/// The whole cross-run report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CrossRunReport {
    /// [`SCHEMA_VERSION`].
    #[schemars(extend("const" = 1))]
    pub schema_version: u32,
    /// Always `tracer-cross-run-report`.
    #[schemars(extend("const" = "tracer-cross-run-report"))]
    pub kind: String,
    /// The tracer that made this report.
    pub tracer_version: String,
    /// Every recording read, in the order given (directories in name order).
    pub runs: Vec<RunDigest>,
    /// Recordings that could not be read at all, with why.
    pub unreadable: Vec<Unreadable>,
    /// Kernels seen, with their runs (a run is one recording).
    pub kernels: Vec<NamedCount>,
    /// Machines seen, with their runs.
    pub hosts: Vec<NamedCount>,
    /// Per test, in name order.
    pub tests: Vec<TestSummary>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Unreadable {
    pub file: String,
    pub error: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NamedCount {
    pub name: String,
    pub runs: u64,
}

/// One test across every run that ran it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestSummary {
    pub test: String,
    /// Runs that ran it.
    pub runs: u64,
    /// Of those, runs with at least one EBUSY story in it.
    pub runs_with_ebusy: u64,
    pub ebusy_stories: u64,
    /// Stories a verdict of which said "nothing traced explains".
    pub unexplained_stories: u64,
    /// Stories still pinned at the end of the test.
    pub stories_not_closed: u64,
    /// First EBUSY to the umount that worked, over the stories that closed.
    pub pinned: Percentiles,
    /// What held the mounts, by kind: in how many stories and runs.
    pub culprit_kinds: Vec<KindCount>,
    /// Release chains by function, most releases first.
    pub chains: Vec<ChainCount>,
    /// Kernels of the runs with EBUSY stories.
    pub ebusy_kernels: Vec<String>,
    /// Leak-report objects by verdict and stack, largest first.
    pub leaks: Vec<LeakGroup>,
    /// The same objects by verdict and call site (the stack's first frame): without
    /// `--alloc-stack-per-object` a call site's stack is the first one seen there in each
    /// run, so one call site can show under several stacks above.
    pub leak_call_sites: Vec<LeakSite>,
    /// Runs with a confirmed leak (verdict `leak`) in this test.
    pub runs_with_confirmed_leaks: u64,
    /// Runs where a detached mount was still pinned at the end of the test.
    pub runs_with_detached_pinned: u64,
    /// Runs where fstests itself failed the test (recordings of `tracer run ./check`).
    #[serde(default)]
    pub runs_failed_by_fstests: u64,
    pub lock_conflicts: LockSummary,
    /// Each run of the test: which recording, machine and kernel, what it found.
    pub per_run: Vec<TestRun>,
}

/// A test in one run, in one line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TestRun {
    /// Index into `runs`.
    pub run: u64,
    /// fstests' own verdict (`pass`, `fail`, `notrun`), when the recording has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstests_status: Option<String>,
    pub host: String,
    pub kernel: String,
    pub started_at: Option<String>,
    pub duration_ns: u64,
    pub ebusy_stories: u64,
    pub unexplained_stories: u64,
    pub lock_stories: u64,
    /// Objects by leak verdict (`leak`, `one_time`, `unconfirmed`, `uncertain`).
    pub leak_objects: BTreeMap<String, u64>,
    pub detached_pinned_at_end: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KindCount {
    pub kind: String,
    pub stories: u64,
    pub runs: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChainCount {
    /// The first link released the culprit; each next one led to the one before.
    pub links: Vec<String>,
    pub releases: u64,
    pub stories: u64,
    pub runs: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LeakGroup {
    pub class: String,
    pub kind: String,
    pub cache: String,
    /// Call site first, `function [module]`.
    pub stack: Vec<String>,
    pub objects: u64,
    pub bytes: u64,
    /// Runs in which this stack had objects of this verdict in this test.
    pub runs: u64,
    pub kernels: Vec<String>,
    pub hosts: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LeakSite {
    pub class: String,
    /// `function [module]`.
    pub call_site: String,
    pub objects: u64,
    pub bytes: u64,
    pub runs: u64,
    /// Distinct stacks seen under it.
    pub stacks: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LockSummary {
    pub stories: u64,
    pub runs: u64,
    /// First conflict to the lock's release, over the stories that ended.
    pub held: Percentiles,
    pub holder_kinds: Vec<KindCount>,
    pub chains: Vec<ChainCount>,
}

/// Counts of story kinds and chains across runs.
#[derive(Default)]
struct StoryTally {
    stories: u64,
    kinds: BTreeMap<String, (u64, BTreeSet<usize>)>,
    chains: BTreeMap<Vec<String>, (u64, u64, BTreeSet<usize>)>,
    durations: Vec<u64>,
    not_closed: u64,
    unexplained: u64,
    runs: BTreeSet<usize>,
}

impl StoryTally {
    fn add(&mut self, run: usize, s: &StoryDigest) {
        self.stories += 1;
        self.runs.insert(run);
        for k in &s.culprit_kinds {
            let e = self.kinds.entry(k.clone()).or_default();
            e.0 += 1;
            e.1.insert(run);
        }
        for c in &s.chains {
            let e = self.chains.entry(c.links.clone()).or_default();
            e.0 += c.releases;
            e.1 += 1;
            e.2.insert(run);
        }
        match s.pinned_ns {
            Some(d) => self.durations.push(d),
            None => self.not_closed += 1,
        }
        self.unexplained += u64::from(s.unexplained);
    }

    fn kinds(&self) -> Vec<KindCount> {
        let mut v: Vec<KindCount> = self
            .kinds
            .iter()
            .map(|(k, (n, runs))| KindCount {
                kind: k.clone(),
                stories: *n,
                runs: runs.len() as u64,
            })
            .collect();
        v.sort_by(|a, b| b.stories.cmp(&a.stories).then_with(|| a.kind.cmp(&b.kind)));
        v
    }

    fn chains(&self) -> Vec<ChainCount> {
        let mut v: Vec<ChainCount> = self
            .chains
            .iter()
            .map(|(links, (releases, stories, runs))| ChainCount {
                links: links.clone(),
                releases: *releases,
                stories: *stories,
                runs: runs.len() as u64,
            })
            .collect();
        v.sort_by(|a, b| {
            b.releases
                .cmp(&a.releases)
                .then_with(|| a.links.cmp(&b.links))
        });
        v
    }
}

#[derive(Default)]
struct LeakTally {
    objects: u64,
    bytes: u64,
    runs: BTreeSet<usize>,
    kernels: BTreeSet<String>,
    hosts: BTreeSet<String>,
}

#[derive(Default)]
struct SiteTally {
    objects: u64,
    bytes: u64,
    runs: BTreeSet<usize>,
    stacks: BTreeSet<Vec<String>>,
}

#[derive(Default)]
struct TestTally {
    runs: BTreeSet<usize>,
    ebusy: StoryTally,
    locks: StoryTally,
    ebusy_kernels: BTreeSet<String>,
    leaks: BTreeMap<(String, String, String, Vec<String>), LeakTally>,
    sites: BTreeMap<(String, String), SiteTally>,
    confirmed_runs: BTreeSet<usize>,
    detached_runs: BTreeSet<usize>,
    fstests_failed_runs: BTreeSet<usize>,
    per_run: Vec<TestRun>,
}

fn named_counts<'a>(names: impl Iterator<Item = &'a str>) -> Vec<NamedCount> {
    let mut m: BTreeMap<&str, u64> = BTreeMap::new();
    for n in names {
        *m.entry(n).or_default() += 1;
    }
    m.into_iter()
        .map(|(name, runs)| NamedCount {
            name: name.to_string(),
            runs,
        })
        .collect()
}

/// Groups the runs per test. A test run twice in one recording counts once as a run.
pub fn summarize(runs: Vec<RunDigest>, unreadable: Vec<Unreadable>) -> CrossRunReport {
    let mut tests: BTreeMap<String, TestTally> = BTreeMap::new();
    for (i, r) in runs.iter().enumerate() {
        for t in &r.tests {
            let tally = tests.entry(t.test.clone()).or_default();
            tally.runs.insert(i);
            for s in &t.ebusy_stories {
                tally.ebusy.add(i, s);
                tally.ebusy_kernels.insert(r.kernel.clone());
            }
            for s in &t.lock_stories {
                tally.locks.add(i, s);
            }
            let mut leak_objects: BTreeMap<String, u64> = BTreeMap::new();
            for l in &t.leaks {
                *leak_objects.entry(l.class.clone()).or_default() += l.objects;
                let e = tally
                    .leaks
                    .entry((
                        l.class.clone(),
                        l.kind.clone(),
                        l.cache.clone(),
                        l.stack.clone(),
                    ))
                    .or_default();
                e.objects += l.objects;
                e.bytes += l.bytes;
                e.runs.insert(i);
                e.kernels.insert(r.kernel.clone());
                e.hosts.insert(r.host.clone());
                let site = tally
                    .sites
                    .entry((
                        l.class.clone(),
                        l.stack.first().cloned().unwrap_or_default(),
                    ))
                    .or_default();
                site.objects += l.objects;
                site.bytes += l.bytes;
                site.runs.insert(i);
                site.stacks.insert(l.stack.clone());
                if l.class == "leak" && l.objects > 0 {
                    tally.confirmed_runs.insert(i);
                }
            }
            if t.detached_pinned_at_end > 0 {
                tally.detached_runs.insert(i);
            }
            if t.fstests_status.as_deref() == Some("fail") {
                tally.fstests_failed_runs.insert(i);
            }
            tally.per_run.push(TestRun {
                run: i as u64,
                fstests_status: t.fstests_status.clone(),
                host: r.host.clone(),
                kernel: r.kernel.clone(),
                started_at: t.started_at.clone(),
                duration_ns: t.duration_ns,
                ebusy_stories: t.ebusy_stories.len() as u64,
                unexplained_stories: t.ebusy_stories.iter().filter(|s| s.unexplained).count()
                    as u64,
                lock_stories: t.lock_stories.len() as u64,
                leak_objects,
                detached_pinned_at_end: t.detached_pinned_at_end,
            });
        }
    }
    let tests = tests
        .into_iter()
        .map(|(test, t)| {
            let mut leaks: Vec<LeakGroup> = t
                .leaks
                .into_iter()
                .map(|((class, kind, cache, stack), l)| LeakGroup {
                    class,
                    kind,
                    cache,
                    stack,
                    objects: l.objects,
                    bytes: l.bytes,
                    runs: l.runs.len() as u64,
                    kernels: l.kernels.into_iter().collect(),
                    hosts: l.hosts.into_iter().collect(),
                })
                .collect();
            let mut leak_call_sites: Vec<LeakSite> = t
                .sites
                .into_iter()
                .map(|((class, call_site), x)| LeakSite {
                    class,
                    call_site,
                    objects: x.objects,
                    bytes: x.bytes,
                    runs: x.runs.len() as u64,
                    stacks: x.stacks.len() as u64,
                })
                .collect();
            leak_call_sites.sort_by(|a, b| {
                class_rank(&a.class)
                    .cmp(&class_rank(&b.class))
                    .then(b.objects.cmp(&a.objects))
                    .then_with(|| a.call_site.cmp(&b.call_site))
            });
            leaks.sort_by(|a, b| {
                class_rank(&a.class)
                    .cmp(&class_rank(&b.class))
                    .then(b.objects.cmp(&a.objects))
                    .then(b.bytes.cmp(&a.bytes))
                    .then_with(|| a.stack.cmp(&b.stack))
            });
            TestSummary {
                test,
                runs: t.runs.len() as u64,
                runs_with_ebusy: t.ebusy.runs.len() as u64,
                ebusy_stories: t.ebusy.stories,
                unexplained_stories: t.ebusy.unexplained,
                stories_not_closed: t.ebusy.not_closed,
                pinned: Percentiles::of(t.ebusy.durations.clone()),
                culprit_kinds: t.ebusy.kinds(),
                chains: t.ebusy.chains(),
                ebusy_kernels: t.ebusy_kernels.into_iter().collect(),
                leaks,
                leak_call_sites,
                runs_with_confirmed_leaks: t.confirmed_runs.len() as u64,
                runs_with_detached_pinned: t.detached_runs.len() as u64,
                runs_failed_by_fstests: t.fstests_failed_runs.len() as u64,
                lock_conflicts: LockSummary {
                    stories: t.locks.stories,
                    runs: t.locks.runs.len() as u64,
                    held: Percentiles::of(t.locks.durations.clone()),
                    holder_kinds: t.locks.kinds(),
                    chains: t.locks.chains(),
                },
                per_run: t.per_run,
            }
        })
        .collect();
    CrossRunReport {
        schema_version: SCHEMA_VERSION,
        kind: REPORT_KIND.to_string(),
        tracer_version: env!("CARGO_PKG_VERSION").to_string(),
        kernels: named_counts(runs.iter().map(|r| r.kernel.as_str())),
        hosts: named_counts(runs.iter().map(|r| r.host.as_str())),
        runs,
        unreadable,
        tests,
    }
}

/// Confirmed leaks first, then what is undecided, then what is not a leak.
fn class_rank(c: &str) -> u8 {
    match c {
        "leak" => 0,
        "unconfirmed" => 1,
        "uncertain" => 2,
        "unclassified" => 3,
        "one_time" => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::report::runs::digest::{ChainDigest, LeakDigest, TestDigest};

    #[test]
    fn the_schema_pins_the_version_it_describes() {
        let s: serde_json::Value =
            serde_json::from_str(&crate::report::runs::schema::json_schema()).unwrap();
        assert_eq!(
            s["properties"]["schema_version"]["const"], SCHEMA_VERSION,
            "bump the const in the attribute with SCHEMA_VERSION"
        );
        assert_eq!(s["properties"]["kind"]["const"], REPORT_KIND);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        let p = Percentiles::of(v);
        assert_eq!((p.count, p.p50_ns, p.p99_ns, p.max_ns), (100, 50, 99, 100));
        let p = Percentiles::of(vec![7]);
        assert_eq!((p.p50_ns, p.p99_ns, p.max_ns), (7, 7, 7));
        let p = Percentiles::of(vec![30, 10, 20]);
        assert_eq!((p.p50_ns, p.p99_ns, p.max_ns), (20, 30, 30));
        assert_eq!(Percentiles::of(vec![]), Percentiles::default());
    }

    proptest! {
        #[test]
        fn percentiles_are_ordered_members(v in proptest::collection::vec(0u64..1_000_000, 1..200)) {
            let p = Percentiles::of(v.clone());
            prop_assert_eq!(p.count, v.len() as u64);
            prop_assert!(p.p50_ns <= p.p99_ns && p.p99_ns <= p.max_ns);
            prop_assert!(v.contains(&p.p50_ns) && v.contains(&p.p99_ns));
            prop_assert_eq!(p.max_ns, *v.iter().max().unwrap());
            // At least half the values are at or below p50, and at least 99% at or below p99.
            let le = |x: u64| v.iter().filter(|y| **y <= x).count() * 100;
            prop_assert!(le(p.p50_ns) >= 50 * v.len());
            prop_assert!(le(p.p99_ns) >= 99 * v.len());
        }

        #[test]
        fn percentiles_do_not_depend_on_order(mut v in proptest::collection::vec(0u64..1000, 1..50)) {
            let a = Percentiles::of(v.clone());
            v.reverse();
            prop_assert_eq!(a, Percentiles::of(v));
        }
    }

    fn story(kinds: &[&str], chain: &[&str], pinned: Option<u64>) -> StoryDigest {
        StoryDigest {
            fs_type: "xfs".into(),
            culprit_kinds: kinds.iter().map(|s| s.to_string()).collect(),
            chains: vec![ChainDigest {
                links: chain.iter().map(|s| s.to_string()).collect(),
                releases: 2,
            }],
            pinned_ns: pinned,
            failed_attempts: 1,
            unexplained: false,
        }
    }

    fn leak(class: &str, stack: &[&str], objects: u64) -> LeakDigest {
        LeakDigest {
            class: class.into(),
            kind: "xfs".into(),
            cache: "kmalloc-64".into(),
            stack: stack.iter().map(|s| s.to_string()).collect(),
            objects,
            bytes: objects * 64,
        }
    }

    fn run(host: &str, kernel: &str, tests: Vec<TestDigest>) -> RunDigest {
        RunDigest {
            file: format!("{host}-{kernel}.trace"),
            host: host.into(),
            kernel: kernel.into(),
            tests,
            ..Default::default()
        }
    }

    fn test(name: &str, stories: Vec<StoryDigest>, leaks: Vec<LeakDigest>) -> TestDigest {
        TestDigest {
            test: name.into(),
            ebusy_stories: stories,
            leaks,
            ..Default::default()
        }
    }

    #[test]
    fn groups_per_test_across_machines_and_kernels() {
        let chain = ["delayed_fput", "armed by io_ring_exit_work"];
        let runs = vec![
            run(
                "vm1",
                "6.1.0",
                vec![
                    test(
                        "generic/388",
                        vec![
                            story(&["uring_fixed"], &chain, Some(10)),
                            story(&["fd", "cwd"], &["task_work (____fput) at exit"], None),
                        ],
                        vec![],
                    ),
                    test(
                        "generic/013",
                        vec![],
                        vec![leak("leak", &["xfs_buf_alloc [xfs]"], 3)],
                    ),
                ],
            ),
            run(
                "vm2",
                "6.18.0",
                vec![
                    test(
                        "generic/388",
                        vec![story(&["uring_fixed"], &chain, Some(30))],
                        vec![],
                    ),
                    test(
                        "generic/013",
                        vec![],
                        vec![
                            leak("leak", &["xfs_buf_alloc [xfs]"], 2),
                            leak("one_time", &["xfs_uuid_mount [xfs]"], 1),
                        ],
                    ),
                ],
            ),
            run("vm2", "6.18.0", vec![test("generic/388", vec![], vec![])]),
        ];
        let r = summarize(runs, vec![]);
        assert_eq!(r.schema_version, SCHEMA_VERSION);
        assert_eq!(
            r.kernels,
            [
                NamedCount {
                    name: "6.1.0".into(),
                    runs: 1
                },
                NamedCount {
                    name: "6.18.0".into(),
                    runs: 2
                }
            ]
        );
        let names: Vec<&str> = r.tests.iter().map(|t| t.test.as_str()).collect();
        assert_eq!(names, ["generic/013", "generic/388"]);
        let g388 = &r.tests[1];
        assert_eq!(
            (g388.runs, g388.runs_with_ebusy, g388.ebusy_stories),
            (3, 2, 3)
        );
        assert_eq!(g388.stories_not_closed, 1);
        assert_eq!(
            (g388.pinned.count, g388.pinned.p50_ns, g388.pinned.max_ns),
            (2, 10, 30)
        );
        assert_eq!(g388.culprit_kinds[0].kind, "uring_fixed");
        assert_eq!(
            (g388.culprit_kinds[0].stories, g388.culprit_kinds[0].runs),
            (2, 2)
        );
        assert_eq!(g388.chains[0].links, chain);
        assert_eq!(
            (
                g388.chains[0].releases,
                g388.chains[0].stories,
                g388.chains[0].runs
            ),
            (4, 2, 2)
        );
        assert_eq!(g388.ebusy_kernels, ["6.1.0", "6.18.0"]);
        assert_eq!(g388.per_run.len(), 3);
        let g013 = &r.tests[0];
        assert_eq!(g013.runs_with_confirmed_leaks, 2);
        assert_eq!(g013.leaks[0].stack, ["xfs_buf_alloc [xfs]"]);
        assert_eq!(
            (g013.leaks[0].objects, g013.leaks[0].runs),
            (5, 2),
            "one group across both kernels"
        );
        assert_eq!(g013.leaks[0].kernels, ["6.1.0", "6.18.0"]);
        assert_eq!(g013.leaks[1].class, "one_time");
        assert_eq!(g013.leak_call_sites[0].call_site, "xfs_buf_alloc [xfs]");
        assert_eq!(
            (
                g013.leak_call_sites[0].objects,
                g013.leak_call_sites[0].runs
            ),
            (5, 2)
        );
    }

    proptest! {
        /// However the runs are made up, the per-test counts add up.
        #[test]
        fn counts_add_up(shape in proptest::collection::vec(
            proptest::collection::vec((0usize..3, 0usize..4, 0u64..5), 0..4), 0..8)) {
            let names = ["generic/001", "generic/388", "xfs/100"];
            let runs: Vec<RunDigest> = shape.iter().enumerate().map(|(i, tests)| {
                run(&format!("h{}", i % 2), "6.18", tests.iter().map(|(t, stories, leaks)| {
                    test(names[*t],
                        (0..*stories).map(|k| story(&["fd"], &["delayed_fput"], (k % 2 == 0).then_some(k as u64))).collect(),
                        if *leaks > 0 { vec![leak("leak", &["f"], *leaks)] } else { vec![] })
                }).collect())
            }).collect();
            let r = summarize(runs.clone(), vec![]);
            for t in &r.tests {
                let ran: Vec<&RunDigest> = runs.iter().filter(|x| x.tests.iter().any(|y| y.test == t.test)).collect();
                prop_assert_eq!(t.runs, ran.len() as u64);
                let stories: usize = runs.iter().flat_map(|x| &x.tests).filter(|y| y.test == t.test).map(|y| y.ebusy_stories.len()).sum();
                prop_assert_eq!(t.ebusy_stories, stories as u64);
                prop_assert_eq!(t.pinned.count + t.stories_not_closed, t.ebusy_stories);
                prop_assert!(t.runs_with_ebusy <= t.runs);
                prop_assert!(t.runs_with_confirmed_leaks <= t.runs);
                let kinds: u64 = t.culprit_kinds.iter().map(|k| k.stories).sum();
                prop_assert_eq!(kinds, t.ebusy_stories);
                let objects: u64 = t.leaks.iter().map(|l| l.objects).sum();
                let expect: u64 = runs.iter().flat_map(|x| &x.tests).filter(|y| y.test == t.test).flat_map(|y| &y.leaks).map(|l| l.objects).sum();
                prop_assert_eq!(objects, expect);
                let by_site: u64 = t.leak_call_sites.iter().map(|l| l.objects).sum();
                prop_assert_eq!(by_site, expect);
            }
            let total: u64 = r.kernels.iter().map(|k| k.runs).sum();
            prop_assert_eq!(total, runs.len() as u64);
        }
    }
}
