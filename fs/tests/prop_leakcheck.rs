//! Cycle confirmation (`tracer_fs::leakcheck`) over generated runs of mount cycles: a site
//! that keeps an object from each cycle that takes its path is confirmed as soon as two
//! cycles kept one, a table made once is one-time from the next cycle on, objects freed before
//! a report are not listed and confirm nothing, every object still allocated is judged exactly once, and
//! the verdicts do not depend on the order the kernel's map is read in.

use proptest::prelude::*;
use tracer_fs::alloc::{Allocation, MountWindow};
use tracer_fs::leakcheck::{Class, Doubts, Ledger};

const LEAKY: u64 = 0xa;
const TABLE: u64 = 0xb;

fn obj(ptr: u64, ts: u64, site: u64) -> Allocation {
    Allocation {
        ptr,
        ts_ns: ts,
        call_site: site,
        cache: String::new(),
        size: 16,
        stack_id: -1,
        pid: 1,
        tgid: 1,
        comm: "mount".into(),
    }
}

fn win(n: u64) -> MountWindow {
    MountWindow {
        id: n,
        target: "/mnt/x".into(),
        source: "/dev/loop0".into(),
        fs_type: "xfs".into(),
        start_ns: n * 100,
        end_ns: Some(n * 100 + 50),
        lazy: false,
        failed: None,
    }
}

/// One generated run: how many cycles, which take the leaky path, when the table is made.
#[derive(Debug, Clone)]
struct Run {
    cycles: u64,
    leaky: Vec<bool>,
    table_at: Option<u64>,
    rotate: usize,
}

fn runs() -> impl Strategy<Value = Run> {
    (2u64..12).prop_flat_map(|cycles| {
        (
            Just(cycles),
            proptest::collection::vec(any::<bool>(), cycles as usize),
            proptest::option::of(1..=cycles),
            0usize..64,
        )
            .prop_map(|(cycles, leaky, table_at, rotate)| Run {
                cycles,
                leaky,
                table_at,
                rotate,
            })
    })
}

proptest! {
    #[test]
    fn cycle_rule_classifies_generated_runs(r in runs()) {
        let mut ledger = Ledger::default();
        let mut alive: Vec<Allocation> = Vec::new();
        let mut ptr = 0x1000;
        for n in 1..=r.cycles {
            let w = win(n);
            let ts = |i: u64| w.start_ns + 1 + i;
            if r.leaky[(n - 1) as usize] {
                ptr += 1;
                alive.push(obj(ptr, ts(0), LEAKY));
            }
            if r.table_at == Some(n) {
                ptr += 1;
                alive.push(obj(ptr, ts(1), TABLE));
            }
            // The map is read in any order.
            let mut read = alive.clone();
            let k = r.rotate % read.len().max(1);
            read.rotate_left(k);
            let current: Vec<&Allocation> = read.iter().filter(|a| w.contains(a.ts_ns)).collect();
            let j = ledger.judge(&w, &current, &read, &|_| Doubts::default(), &|_| None);
            prop_assert_eq!(j.cycle, n);
            // Every object still allocated is judged once.
            let mut judged: Vec<u64> = j.current.iter().chain(&j.earlier).map(|x| x.obj.ptr).collect();
            judged.sort();
            let mut want: Vec<u64> = alive.iter().map(|a| a.ptr).collect();
            want.sort();
            prop_assert_eq!(&judged, &want);
            let leaky_so_far = r.leaky[..n as usize].iter().filter(|b| **b).count();
            for x in j.current.iter().chain(&j.earlier) {
                let expected = match x.obj.call_site {
                    LEAKY if leaky_so_far >= 2 => Class::Leak,
                    LEAKY | TABLE if !x.earlier => Class::Unconfirmed,
                    LEAKY | TABLE => Class::OneTime,
                    _ => unreachable!(),
                };
                prop_assert_eq!(x.class, expected, "{} in cycle {}: {}", x.obj.call_site, n, x.why);
                prop_assert!(!x.why.is_empty());
            }
        }
    }

    /// A table whose address global data holds is referenced from its first cycle on, and
    /// changes nothing for the leaks: they are judged as without it.
    #[test]
    fn referenced_tables_never_confirm_and_leave_leaks_alone(r in runs()) {
        let mut ledger = Ledger::default();
        let mut alive: Vec<Allocation> = Vec::new();
        let mut ptr = 0x1000;
        let held = |a: &Allocation| (a.call_site == TABLE).then(|| "table+0x0".to_string());
        for n in 1..=r.cycles {
            let w = win(n);
            let ts = |i: u64| w.start_ns + 1 + i;
            if r.leaky[(n - 1) as usize] {
                ptr += 1;
                alive.push(obj(ptr, ts(0), LEAKY));
            }
            // Here the table site allocates in every cycle: held, it is still no leak.
            ptr += 1;
            alive.push(obj(ptr, ts(1), TABLE));
            let current: Vec<&Allocation> = alive.iter().filter(|a| w.contains(a.ts_ns)).collect();
            let j = ledger.judge(&w, &current, &alive, &|_| Doubts::default(), &held);
            let leaky_so_far = r.leaky[..n as usize].iter().filter(|b| **b).count();
            for x in j.current.iter().chain(&j.earlier) {
                let expected = match x.obj.call_site {
                    TABLE => Class::Referenced,
                    LEAKY if leaky_so_far >= 2 => Class::Leak,
                    LEAKY if !x.earlier => Class::Unconfirmed,
                    LEAKY => Class::OneTime,
                    _ => unreachable!(),
                };
                prop_assert_eq!(x.class, expected, "{} in cycle {}: {}", x.obj.call_site, n, x.why);
            }
        }
    }

    /// Objects freed between reports leave the judgement, and what stays is judged from
    /// what stays only.
    #[test]
    fn freed_objects_never_confirm(cycles in 2u64..10, free_before_next in any::<bool>()) {
        let mut ledger = Ledger::default();
        let mut alive: Vec<Allocation> = Vec::new();
        for n in 1..=cycles {
            let w = win(n);
            if free_before_next {
                alive.clear();
            }
            alive.push(obj(n, w.start_ns + 1, LEAKY));
            let current: Vec<&Allocation> = alive.iter().filter(|a| w.contains(a.ts_ns)).collect();
            let j = ledger.judge(&w, &current, &alive, &|_| Doubts::default(), &|_| None);
            let want = if free_before_next || n == 1 { Class::Unconfirmed } else { Class::Leak };
            prop_assert_eq!(j.current[0].class, want);
            prop_assert_eq!(j.earlier.len(), if free_before_next { 0 } else { (n - 1) as usize });
        }
    }
}
