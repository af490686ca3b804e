//! Tasks (processes): when they exited and how, and who killed whom. Pids are reused, so a
//! pid maps to its current *instance*; older instances stay (bounded) for the holders and
//! rings that still point at them.

use std::collections::{BTreeMap, VecDeque};

use foldhash::HashMap;

use serde::Serialize;

use crate::actor::Actor;
use crate::text::exit_signal;

pub const SIGKILL: i32 = 9;

/// Thread views of one scan are this close in time (a scan takes well under this).
const SCAN_SAME_NS: u64 = 50_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskExitInfo {
    pub ts_ns: u64,
    /// `task->exit_code`: signal number in the low 7 bits, exit status in bits 8-15.
    pub exit_code: i32,
    /// The thread whose exit ended the process.
    pub pid: u32,
}

impl TaskExitInfo {
    pub fn signal(&self) -> Option<i32> {
        exit_signal(self.exit_code)
    }
}

/// A fatal signal sent to the task (`signal_generate`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KillInfo {
    pub ts_ns: u64,
    pub sig: i32,
    /// `signal_generate`'s result (0: delivered; others: ignored, already pending, ...).
    pub result: i32,
    pub sender_pid: u32,
    pub sender_tgid: u32,
    pub sender_comm: crate::actor::Comm,
}

/// What the last task scan read of one of a process's threads that still held something
/// (or of any thread, when none did): where an exiting task waits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskScanInfo {
    pub ts_ns: u64,
    /// The thread scanned.
    pub pid: u32,
    pub exiting: bool,
    pub zombie: bool,
    /// `__state` (2: uninterruptible).
    pub state: u32,
    pub has_files: bool,
    pub has_fs: bool,
    pub has_mm: bool,
    /// Kernel stack, innermost first.
    pub stack: Vec<String>,
}

impl TaskScanInfo {
    /// "exit_aio ← __mmput ← do_exit": the frames that say where it waits, without the
    /// scheduler's own frames and offsets.
    pub fn waits_in(&self) -> Option<String> {
        const SCHED: &[&str] = &[
            "__schedule",
            "schedule",
            "schedule_timeout",
            "io_schedule",
            "__switch_to",
            "__switch_to_asm",
            "schedule_preempt_disabled",
            "__wait_for_common",
            "wait_for_completion",
        ];
        let frames: Vec<&str> = self
            .frame_names()
            .filter(|f| !SCHED.contains(f))
            .take(4)
            .collect();
        (!frames.is_empty()).then(|| frames.join(" ← "))
    }

    /// The syscall a living thread was inside at the scan, from its stack's entry frame
    /// (`__x64_sys_renameat2` → "renameat2"; "a syscall" when only the entry code shows).
    /// None for a thread in user space (its stack, if any, is an interrupt's).
    pub fn syscall(&self) -> Option<String> {
        const ENTRY: &[&str] = &[
            "__x64_sys_",
            "__ia32_sys_",
            "__arm64_sys_",
            "__riscv_sys_",
            "__s390x_sys_",
            "__se_sys_",
            "__do_sys_",
        ];
        let entry = |f: &str| {
            ENTRY
                .iter()
                .find_map(|p| f.strip_prefix(p))
                .map(str::to_string)
        };
        self.frame_names().find_map(entry).or_else(|| {
            self.frame_names()
                .any(|f| {
                    matches!(
                        f,
                        "do_syscall_64" | "x64_sys_call" | "el0_svc" | "invoke_syscall"
                    )
                })
                .then(|| "a syscall".to_string())
        })
    }

    /// The stack's function names, innermost first, without their offsets.
    fn frame_names(&self) -> impl Iterator<Item = &str> {
        self.stack.iter().map(|f| f.split('+').next().unwrap_or(f))
    }
}

/// One process instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Task {
    /// Engine-wide identity of this instance.
    pub serial: u64,
    pub tgid: u32,
    pub comm: crate::actor::Comm,
    pub first_seen_ns: u64,
    pub exit: Option<TaskExitInfo>,
    /// The SIGKILL sent to it, if seen (the first delivered one).
    pub killed: Option<KillInfo>,
    /// Its fd table was freed (`exit_files()` of its last thread): every fd is put.
    pub files_gone_ns: Option<u64>,
    /// Its fs_struct was freed (`exit_fs()`): its cwd and root no longer pin anything.
    pub fs_gone_ns: Option<u64>,
    /// The last task scan's view of it.
    pub scan: Option<TaskScanInfo>,
}

impl Task {
    /// No `sched_process_exit` seen for its last thread.
    pub fn alive(&self) -> bool {
        self.exit.is_none()
    }

    /// Past its exit tracepoint but still inside `do_exit()`, holding its fd table or its
    /// cwd/root (as far as we know: their frees not seen yet).
    pub fn exiting(&self) -> bool {
        self.exit.is_some()
            && (self.files_gone_ns.is_none() || self.fs_gone_ns.is_none())
            && !self.scan.as_ref().is_some_and(|s| s.zombie)
    }
}

#[derive(Clone, Copy, Debug)]
struct Current {
    serial: u64,
    exited: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Tasks {
    by_serial: BTreeMap<u64, Task>,
    /// Each process's current instance, and whether it exited: asked for every event
    /// (`is_exited`), without a search of `by_serial`.
    current: HashMap<u32, Current>,
    exited_order: VecDeque<u64>,
    tid_tgid: HashMap<u32, u32>,
    next_serial: u64,
    pub evicted: u64,
}

impl Tasks {
    pub fn get(&self, serial: u64) -> Option<&Task> {
        self.by_serial.get(&serial)
    }

    /// The current instance of process `tgid`.
    pub fn current(&self, tgid: u32) -> Option<&Task> {
        self.current
            .get(&tgid)
            .and_then(|c| self.by_serial.get(&c.serial))
    }

    pub fn is_exited(&self, tgid: u32) -> bool {
        self.current.get(&tgid).is_some_and(|c| c.exited)
    }

    pub fn len(&self) -> usize {
        self.by_serial.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_serial.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Task> {
        self.by_serial.values()
    }

    fn create(&mut self, tgid: u32, comm: &str, ts: u64) -> u64 {
        self.next_serial += 1;
        let s = self.next_serial;
        self.by_serial.insert(
            s,
            Task {
                serial: s,
                tgid,
                comm: comm.into(),
                first_seen_ns: ts,
                exit: None,
                killed: None,
                files_gone_ns: None,
                fs_gone_ns: None,
                scan: None,
            },
        );
        self.current.insert(
            tgid,
            Current {
                serial: s,
                exited: false,
            },
        );
        s
    }

    fn note_thread(&mut self, pid: u32, tgid: u32, cap: usize) {
        if pid != tgid {
            if self.tid_tgid.len() >= cap.max(1) && !self.tid_tgid.contains_key(&pid) {
                self.tid_tgid.clear();
            }
            self.tid_tgid.insert(pid, tgid);
        }
    }

    /// The current instance of `tgid`, created on first sight; a leader's comm updates it
    /// (exec changes comm).
    pub fn observe(&mut self, tgid: u32, pid: u32, comm: &str, ts: u64, cap: usize) -> u64 {
        self.note_thread(pid, tgid, cap);
        match self.current.get(&tgid).map(|c| c.serial) {
            Some(s) => {
                if let Some(t) = self.by_serial.get_mut(&s)
                    && pid == tgid
                    && !comm.is_empty()
                    && t.alive()
                    && t.comm != comm
                {
                    t.comm = comm.into();
                }
                s
            }
            None => self.create(tgid, comm, ts),
        }
    }

    /// Like [`Tasks::observe`] for a task acting as a live process (opening a file,
    /// creating a ring): a pid doing so after its process exited is a new process.
    pub fn observe_live(&mut self, tgid: u32, pid: u32, comm: &str, ts: u64, cap: usize) -> u64 {
        if self.is_exited(tgid) {
            self.note_thread(pid, tgid, cap);
            return self.create(tgid, comm, ts);
        }
        self.observe(tgid, pid, comm, ts, cap)
    }

    /// `sched_process_exit`. Returns the process instance that ended when `group_dead`.
    pub fn exit(
        &mut self,
        tgid: u32,
        pid: u32,
        comm: &str,
        exit_code: i32,
        group_dead: bool,
        ts: u64,
    ) -> Option<u64> {
        self.tid_tgid.remove(&pid);
        if !group_dead {
            return None;
        }
        let s = match self.current.get(&tgid).map(|c| c.serial) {
            Some(s) if self.by_serial.get(&s).is_some_and(Task::alive) => s,
            // Never seen alive (or its previous instance already exited): a new process.
            _ => self.create(tgid, comm, ts),
        };
        if let Some(t) = self.by_serial.get_mut(&s) {
            t.exit = Some(TaskExitInfo {
                ts_ns: ts,
                exit_code,
                pid,
            });
        }
        if let Some(c) = self.current.get_mut(&tgid)
            && c.serial == s
        {
            c.exited = true;
        }
        self.exited_order.push_back(s);
        Some(s)
    }

    /// The fd table or fs_struct of process `tgid` was freed in one of its threads. Returns
    /// the instance when it had exited (its exit's release); a live process freeing one
    /// (unshare, exec) changes nothing we track.
    pub fn res_freed(&mut self, tgid: u32, what: crate::event::TaskRes, ts: u64) -> Option<u64> {
        let s = self.current.get(&tgid)?.serial;
        let t = self.by_serial.get_mut(&s)?;
        t.exit.as_ref()?;
        let slot = match what {
            crate::event::TaskRes::Files => &mut t.files_gone_ns,
            crate::event::TaskRes::Fs => &mut t.fs_gone_ns,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(ts);
        Some(s)
    }

    /// A task scan saw thread `pid` of `tgid`: keeps the view of the thread that still
    /// holds the most (an exiting thread with its fd table or fs_struct first).
    pub fn scanned(
        &mut self,
        tgid: u32,
        pid: u32,
        comm: &str,
        info: TaskScanInfo,
        cap: usize,
    ) -> u64 {
        let s = self.observe(tgid, pid, comm, info.ts_ns, cap);
        if let Some(t) = self.by_serial.get_mut(&s) {
            let weight = |i: &TaskScanInfo| {
                (i.exiting && !i.zombie) as u8 * 4
                    + (i.has_files || i.has_fs) as u8 * 2
                    + !i.stack.is_empty() as u8
            };
            let keep_old = t.scan.as_ref().is_some_and(|o| {
                o.ts_ns + SCAN_SAME_NS > info.ts_ns && o.pid != pid && weight(o) > weight(&info)
            });
            if !keep_old {
                t.scan = Some(info);
            }
        }
        s
    }

    /// `signal_generate` from `sender` to `target_pid` (a thread or process id).
    pub fn signal(
        &mut self,
        target_pid: i32,
        sig: i32,
        result: i32,
        target_comm: &str,
        sender: &Actor,
    ) -> Option<u64> {
        if target_pid <= 0 {
            return None;
        }
        let pid = target_pid as u32;
        let tgid = self.tid_tgid.get(&pid).copied().unwrap_or(pid);
        let s = match self.current.get(&tgid) {
            Some(c) => c.serial,
            None => self.create(tgid, target_comm, sender.ts_ns),
        };
        if sig == SIGKILL
            && let Some(t) = self.by_serial.get_mut(&s)
            && t.alive()
        {
            let replace = match &t.killed {
                None => true,
                Some(k) => k.result != 0 && result == 0,
            };
            if replace {
                t.killed = Some(KillInfo {
                    ts_ns: sender.ts_ns,
                    sig,
                    result,
                    sender_pid: sender.pid,
                    sender_tgid: sender.tgid,
                    sender_comm: sender.comm.clone(),
                });
            }
        }
        Some(s)
    }

    /// Keeps at most `cap` instances: exited ones go first, oldest first.
    pub fn evict_to(&mut self, cap: usize) {
        while self.by_serial.len() > cap {
            let victim = loop {
                match self.exited_order.pop_front() {
                    Some(s) if self.by_serial.contains_key(&s) => break Some(s),
                    Some(_) => continue,
                    None => break self.by_serial.keys().next().copied(),
                }
            };
            let Some(s) = victim else { break };
            if let Some(t) = self.by_serial.remove(&s)
                && self.current.get(&t.tgid).map(|c| c.serial) == Some(s)
            {
                self.current.remove(&t.tgid);
            }
            self.evicted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(pid: u32, comm: &str, ts: u64) -> Actor {
        Actor {
            ts_ns: ts,
            pid,
            tgid: pid,
            comm: comm.into(),
            work: None,
            work_instance: None,
            ring: None,
            task_exited: false,
        }
    }

    #[test]
    fn kill_then_exit_then_pid_reuse() {
        let mut t = Tasks::default();
        let s1 = t.observe_live(100, 100, "fsstress", 1, 10);
        t.signal(100, SIGKILL, 0, "fsstress", &actor(50, "bash", 2));
        // a thread of the process exits: the process lives on
        t.observe(100, 101, "fsstress", 2, 10);
        assert_eq!(t.exit(100, 101, "fsstress", 9, false, 3), None);
        assert_eq!(t.exit(100, 100, "fsstress", 9, true, 4), Some(s1));
        let old = t.get(s1).unwrap();
        assert_eq!(old.killed.as_ref().unwrap().sender_comm, "bash");
        assert_eq!(old.exit.as_ref().unwrap().signal(), Some(9));
        assert!(t.is_exited(100));
        // the dying task still acts (task_work at exit): same instance
        assert_eq!(t.observe(100, 100, "fsstress", 5, 10), s1);
        // a new process gets the pid
        let s2 = t.observe_live(100, 100, "cat", 6, 10);
        assert_ne!(s1, s2);
        assert!(t.current(100).unwrap().alive());
        assert_eq!(t.current(100).unwrap().comm, "cat");
    }

    fn scan_of(stack: &[&str]) -> TaskScanInfo {
        TaskScanInfo {
            ts_ns: 1,
            pid: 1,
            exiting: false,
            zombie: false,
            state: 2,
            has_files: true,
            has_fs: true,
            has_mm: true,
            stack: stack.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_syscall_a_thread_is_in_comes_from_its_entry_frame() {
        let rename = scan_of(&[
            "__schedule+0x2d1",
            "xfs_ilock+0x5a",
            "xfs_rename+0x10c",
            "vfs_rename+0x3b2",
            "do_renameat2+0x411",
            "__x64_sys_renameat2+0x4c",
            "do_syscall_64+0x7d",
            "entry_SYSCALL_64_after_hwframe+0x76",
        ]);
        assert_eq!(rename.syscall().as_deref(), Some("renameat2"));
        assert_eq!(
            rename.waits_in().as_deref(),
            Some("xfs_ilock ← xfs_rename ← vfs_rename ← do_renameat2")
        );
        // Only the dispatcher symbolized: a syscall all the same.
        let bare = scan_of(&["0xffffffff81000000", "do_syscall_64+0x7d"]);
        assert_eq!(bare.syscall().as_deref(), Some("a syscall"));
        // Interrupted in user space: no syscall.
        let user = scan_of(&[
            "irqentry_exit_to_user_mode+0x1c",
            "asm_sysvec_apic_timer_interrupt+0x1a",
        ]);
        assert_eq!(user.syscall(), None);
        assert_eq!(scan_of(&[]).syscall(), None);
    }

    #[test]
    fn signal_to_a_thread_lands_on_its_process() {
        let mut t = Tasks::default();
        t.observe(200, 201, "worker", 1, 10);
        let s = t
            .signal(201, SIGKILL, 0, "worker", &actor(1, "init", 2))
            .unwrap();
        assert_eq!(t.get(s).unwrap().tgid, 200);
        // a non-delivered SIGKILL does not replace the delivered one
        t.signal(200, SIGKILL, 2, "worker", &actor(2, "other", 3));
        assert_eq!(t.get(s).unwrap().killed.as_ref().unwrap().sender_pid, 1);
        // signals other than SIGKILL are not recorded as kills
        let s3 = t.signal(300, 15, 0, "x", &actor(1, "init", 4)).unwrap();
        assert!(t.get(s3).unwrap().killed.is_none());
        assert_eq!(t.signal(0, 9, 0, "x", &actor(1, "init", 4)), None);
    }

    #[test]
    fn exit_of_an_unseen_process_and_eviction() {
        let mut t = Tasks::default();
        let s = t.exit(7, 7, "ghost", 0, true, 1).unwrap();
        assert!(!t.get(s).unwrap().alive());
        // exiting again means another process had the pid
        let s2 = t.exit(7, 7, "ghost2", 0, true, 2).unwrap();
        assert_ne!(s, s2);
        for p in 10..20 {
            t.observe(p, p, "p", 3, 100);
        }
        t.evict_to(5);
        assert_eq!(t.len(), 5);
        assert_eq!(t.evicted, 7);
        // exited ones went first
        assert!(t.get(s).is_none() && t.get(s2).is_none());
    }
}
