//! The logical hooks tracer wants, and for each the attach points that can serve it, best
//! first. `attach` (mod.rs) walks this table; `doctor` prints it. What became of each hook
//! ([`HookStatus`]) lives here too, so the allocation tracker and the sinks can read it
//! without depending on the attach code.

/// How a program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    Fentry,
    Fexit,
    Kprobe,
    Kretprobe,
    RawTracepoint,
    Tracepoint,
    TpBtf,
    Iterator,
    /// A syscall handler called through the `raw_syscalls` dispatch (two raw tracepoints,
    /// a table of handlers by syscall number) instead of its own classic tracepoint.
    RawSyscalls,
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mechanism::Fentry => "fentry",
            Mechanism::Fexit => "fexit",
            Mechanism::Kprobe => "kprobe",
            Mechanism::Kretprobe => "kretprobe",
            Mechanism::RawTracepoint => "raw tracepoint",
            Mechanism::Tracepoint => "tracepoint",
            Mechanism::TpBtf => "BTF tracepoint",
            Mechanism::Iterator => "BPF iterator",
            Mechanism::RawSyscalls => "raw_syscalls",
        })
    }
}

impl Mechanism {
    /// A program on the kernel function itself (BPF trampoline or kprobe), not a
    /// tracepoint near it.
    pub fn on_function(self) -> bool {
        matches!(
            self,
            Mechanism::Fentry | Mechanism::Fexit | Mechanism::Kprobe | Mechanism::Kretprobe
        )
    }
}

/// One way to serve a hook: a program and where it goes.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub mechanism: Mechanism,
    /// Program name in the eBPF object.
    pub program: &'static str,
    /// Tracepoint `category/name`, raw tracepoint name, or kernel function.
    pub target: &'static str,
    /// For raw tracepoints: (argument index, type the program assumes), checked against
    /// the kernel's BTF before the raw program is preferred.
    pub raw_args: &'static [(usize, &'static str)],
}

/// A hook tracer wants, and the points that can serve it (all `points` are attached; a
/// hook with several `alternatives` uses the first that works).
#[derive(Clone, Copy, Debug)]
pub struct Hook {
    pub name: &'static str,
    pub why: &'static str,
    /// Each inner slice is one complete way to serve the hook; the first that attaches
    /// whole wins. A point another hook already attached is shared, not attached twice.
    pub alternatives: &'static [&'static [Point]],
    /// A hook of the full-kernel tier: served exactly by fentry/fexit or kprobe/kretprobe on
    /// the kernel function, else (where there is one) approximated by the tracepoint tier.
    pub precise: bool,
}

const fn tp(program: &'static str, target: &'static str) -> Point {
    Point {
        mechanism: Mechanism::Tracepoint,
        program,
        target,
        raw_args: &[],
    }
}

/// A syscall handler for the `raw_syscalls` dispatch; `target` names the classic tracepoint
/// it stands for (`sys_enter_close`), whose format says where the arguments are.
const fn sys(program: &'static str, target: &'static str) -> Point {
    Point {
        mechanism: Mechanism::RawSyscalls,
        program,
        target,
        raw_args: &[],
    }
}

const fn fentry(program: &'static str, function: &'static str) -> Point {
    Point {
        mechanism: Mechanism::Fentry,
        program,
        target: function,
        raw_args: &[],
    }
}

const fn fexit(program: &'static str, function: &'static str) -> Point {
    Point {
        mechanism: Mechanism::Fexit,
        program,
        target: function,
        raw_args: &[],
    }
}

const fn kprobe(program: &'static str, function: &'static str) -> Point {
    Point {
        mechanism: Mechanism::Kprobe,
        program,
        target: function,
        raw_args: &[],
    }
}

const fn kretprobe(program: &'static str, function: &'static str) -> Point {
    Point {
        mechanism: Mechanism::Kretprobe,
        program,
        target: function,
        raw_args: &[],
    }
}

const fn raw(
    program: &'static str,
    target: &'static str,
    raw_args: &'static [(usize, &'static str)],
) -> Point {
    Point {
        mechanism: Mechanism::RawTracepoint,
        program,
        target,
        raw_args,
    }
}

/// The raw `kmem_cache_free` programs (the `filp` free stands for `__fput` on the
/// tracepoint tier, and the slab hook counts): the program, then its twin, attached after
/// it, which does its work for a free that interrupts it (`free_twin` in the eBPF crate).
const CACHE_FREE_RAW: &[Point] = &[
    raw(
        "raw_kmem_cache_free",
        "kmem_cache_free",
        &[(1, "void *"), (2, "struct kmem_cache *")],
    ),
    raw(
        "raw_kmem_cache_free_twin",
        "kmem_cache_free",
        &[(1, "void *"), (2, "struct kmem_cache *")],
    ),
];

/// A work item starting, as the workqueue hook attaches it (shared, never attached twice).
const WORK_START_RAW: &[Point] = &[raw(
    "raw_workqueue_execute_start",
    "workqueue_execute_start",
    &[(0, "struct work_struct *")],
)];
const WORK_START_TP: &[Point] = &[tp(
    "workqueue_execute_start",
    "workqueue/workqueue_execute_start",
)];

/// The raw io_uring points (the same arguments from 6.1 to 7.x): raw tracepoints detach
/// at once, where each classic one waits for RCU grace periods under `event_mutex`.
const URING_CREATE_RAW: Point = raw(
    "raw_io_uring_create",
    "io_uring_create",
    &[
        (0, "int"),
        (1, "void *"),
        (2, "unsigned int"),
        (3, "unsigned int"),
        (4, "unsigned int"),
    ],
);
const URING_REGISTER_RAW: Point = raw(
    "raw_io_uring_register",
    "io_uring_register",
    &[
        (0, "void *"),
        (1, "unsigned int"),
        (2, "unsigned int"),
        (4, "long int"),
    ],
);
const URING_FILE_GET_RAW: Point = raw(
    "raw_io_uring_file_get",
    "io_uring_file_get",
    &[(0, "struct io_kiocb *"), (1, "int")],
);

/// `io_uring_register(2)`'s entry and exit (the fd array it passes), through the dispatch.
const REGISTER_ENTER_SYS: Point = sys(
    "raw_sys_enter_io_uring_register",
    "sys_enter_io_uring_register",
);
const REGISTER_EXIT_SYS: Point = sys(
    "raw_sys_exit_io_uring_register",
    "sys_exit_io_uring_register",
);

/// `flock_lock_inode` and `posix_lock_inode`: `(inode, fl, ret)`.
const LOCK_RAW_ARGS: &[(usize, &str)] =
    &[(0, "struct inode *"), (1, "struct file_lock *"), (2, "int")];

/// Hooks only allocation tracking needs: without it their programs would only count every
/// slab and kmalloc allocation in the system (the `filp`, `files_cache` and `fs_cache`
/// pointers are learnt from the frees). Attached with `--alloc-filter`, and by `tracer
/// doctor` to say whether they can be.
pub const ALLOC_ONLY: &[&str] = &["kmem_cache alloc", "kmalloc/kfree"];

pub const HOOKS: &[Hook] = &[
    Hook {
        name: "fput",
        why: "a reference dropped (last one or not)",
        alternatives: &[
            // The twin, then the first program: see `__fput`'s.
            &[
                fentry("fentry_fput_twin", "fput"),
                fentry("fentry_fput", "fput"),
            ],
            &[kprobe("kprobe_fput", "fput")],
        ],
        precise: true,
    },
    Hook {
        name: "__fput",
        why: "the real release of a file (its mount reference goes)",
        // The tracepoint tier's stand-in: the `filp` slab free (shared with the slab hook).
        alternatives: &[
            // The twin, which reports a release the first program was skipped for, and
            // then the first: a trampoline runs the program attached last first (the
            // kernel adds each link at the head of its list), and the twin must run after
            // the first. (Listed the other way round, every release was reported twice:
            // the twin ran first, found no note and stood in.)
            &[
                fexit("fexit_real_fput_twin", "__fput"),
                fexit("fexit_real_fput", "__fput"),
            ],
            &[
                kprobe("kprobe_real_fput", "__fput"),
                kretprobe("kretprobe_real_fput", "__fput"),
            ],
            CACHE_FREE_RAW,
            &[tp("kmem_cache_free", "kmem/kmem_cache_free")],
        ],
        precise: true,
    },
    Hook {
        name: "task_work_add(____fput)",
        why: "a release deferred to the task's return to user space",
        alternatives: &[
            &[fentry("fentry_task_work_add", "task_work_add")],
            &[kprobe("kprobe_task_work_add", "task_work_add")],
        ],
        precise: true,
    },
    Hook {
        name: "workqueue",
        why: "delayed_fput, io_uring fallback and ring exit work: queued, run, by whom",
        alternatives: &[
            &[
                raw(
                    "raw_workqueue_queue_work",
                    "workqueue_queue_work",
                    &[(0, "int"), (2, "struct work_struct *")],
                ),
                raw(
                    "raw_workqueue_execute_start",
                    "workqueue_execute_start",
                    &[(0, "struct work_struct *")],
                ),
                raw(
                    "raw_workqueue_execute_end",
                    "workqueue_execute_end",
                    &[(0, "struct work_struct *"), (1, "fn *")],
                ),
            ],
            &[
                tp("workqueue_queue_work", "workqueue/workqueue_queue_work"),
                tp(
                    "workqueue_execute_start",
                    "workqueue/workqueue_execute_start",
                ),
                tp("workqueue_execute_end", "workqueue/workqueue_execute_end"),
            ],
        ],
        precise: false,
    },
    Hook {
        name: "delayed_fput",
        why: "the global deferred-release work running (entry)",
        // The tracepoint tier sees its run as a work item starting (shared point).
        alternatives: &[
            &[fentry("fentry_delayed_fput", "delayed_fput")],
            &[kprobe("kprobe_delayed_fput", "delayed_fput")],
            WORK_START_RAW,
            WORK_START_TP,
        ],
        precise: true,
    },
    Hook {
        name: "io_fallback_req_func",
        why: "io_uring completing an exiting task's requests (entry; the ring's \
              `io_fallback_req_func`, or on newer kernels (7.2) the task context's \
              `io_tctx_fallback_work`)",
        // Both take the `struct work_struct *` of the work item they run.
        alternatives: &[
            &[fentry(
                "fentry_io_fallback_req_func",
                "io_fallback_req_func",
            )],
            &[fentry(
                "fentry_io_fallback_req_func",
                "io_tctx_fallback_work",
            )],
            &[kprobe(
                "kprobe_io_fallback_req_func",
                "io_fallback_req_func",
            )],
            &[kprobe(
                "kprobe_io_fallback_req_func",
                "io_tctx_fallback_work",
            )],
            WORK_START_RAW,
            WORK_START_TP,
        ],
        precise: true,
    },
    Hook {
        name: "io_ring_exit_work",
        why: "an io_uring ring torn down (entry)",
        alternatives: &[
            &[fentry("fentry_io_ring_exit_work", "io_ring_exit_work")],
            &[kprobe("kprobe_io_ring_exit_work", "io_ring_exit_work")],
            WORK_START_RAW,
            WORK_START_TP,
        ],
        precise: true,
    },
    Hook {
        name: "delayed work armed",
        why: "who scheduled delayed_fput (its queue event fires from a timer)",
        alternatives: &[
            &[raw(
                "raw_timer_start",
                "timer_start",
                &[(0, "struct timer_list *")],
            )],
            &[tp("timer_start", "timer/timer_start")],
        ],
        precise: false,
    },
    Hook {
        name: "mount/umount result",
        why: "mount(2), umount2(2), move_mount(2), fsmount(2) with path and return value",
        alternatives: &[
            &[
                sys("raw_sys_enter_mount", "sys_enter_mount"),
                sys("raw_sys_enter_umount", "sys_enter_umount"),
                sys("raw_sys_exit_mount_family", "sys_exit_mount"),
                sys("raw_sys_exit_mount_family", "sys_exit_umount"),
            ],
            &[
                tp("sys_enter_mount", "syscalls/sys_enter_mount"),
                tp("sys_enter_umount", "syscalls/sys_enter_umount"),
                tp("sys_exit_mount_family", "syscalls/sys_exit_mount"),
                tp("sys_exit_mount_family", "syscalls/sys_exit_umount"),
            ],
        ],
        precise: false,
    },
    Hook {
        name: "path_umount return",
        why: "the umount's real result, with the mount itself",
        // The tracepoint tier: umount2(2)'s exit, by path (shared points).
        alternatives: &[
            &[fexit("fexit_path_umount", "path_umount")],
            &[
                kprobe("kprobe_path_umount", "path_umount"),
                kretprobe("kretprobe_path_umount", "path_umount"),
            ],
            &[
                sys("raw_sys_enter_umount", "sys_enter_umount"),
                sys("raw_sys_exit_mount_family", "sys_exit_umount"),
            ],
            &[
                tp("sys_enter_umount", "syscalls/sys_enter_umount"),
                tp("sys_exit_mount_family", "syscalls/sys_exit_umount"),
            ],
        ],
        precise: true,
    },
    Hook {
        name: "cleanup_mnt",
        why: "a mount really going away (its last reference gone)",
        alternatives: &[
            &[fentry("fentry_cleanup_mnt", "cleanup_mnt")],
            &[kprobe("kprobe_cleanup_mnt", "cleanup_mnt")],
        ],
        precise: true,
    },
    Hook {
        name: "new mount API",
        why: "move_mount(2) and fsmount(2)",
        alternatives: &[
            &[
                sys("raw_sys_enter_move_mount", "sys_enter_move_mount"),
                sys("raw_sys_enter_fsmount", "sys_enter_fsmount"),
                sys("raw_sys_exit_mount_family", "sys_exit_move_mount"),
                sys("raw_sys_exit_mount_family", "sys_exit_fsmount"),
            ],
            &[
                tp("sys_enter_move_mount", "syscalls/sys_enter_move_mount"),
                tp("sys_enter_fsmount", "syscalls/sys_enter_fsmount"),
                tp("sys_exit_mount_family", "syscalls/sys_exit_move_mount"),
                tp("sys_exit_mount_family", "syscalls/sys_exit_fsmount"),
            ],
        ],
        precise: false,
    },
    Hook {
        name: "open",
        why: "fd -> file -> mount for open, openat, openat2, creat",
        alternatives: &[
            &[
                sys("raw_sys_exit_openat_family", "sys_exit_openat"),
                sys("raw_sys_exit_openat_family", "sys_exit_openat2"),
                sys("raw_sys_exit_open_family", "sys_exit_open"),
                sys("raw_sys_exit_open_family", "sys_exit_creat"),
            ],
            &[
                tp("sys_enter_openat", "syscalls/sys_enter_openat"),
                tp("sys_enter_openat2", "syscalls/sys_enter_openat2"),
                tp("sys_enter_open", "syscalls/sys_enter_open"),
                tp("sys_enter_creat", "syscalls/sys_enter_creat"),
                tp("sys_exit_openat_family", "syscalls/sys_exit_openat"),
                tp("sys_exit_openat_family", "syscalls/sys_exit_openat2"),
                tp("sys_exit_open_family", "syscalls/sys_exit_open"),
                tp("sys_exit_open_family", "syscalls/sys_exit_creat"),
            ],
        ],
        precise: false,
    },
    Hook {
        name: "close",
        why: "an fd dropped its file",
        alternatives: &[
            &[sys("raw_sys_enter_close", "sys_enter_close")],
            &[tp("sys_enter_close", "syscalls/sys_enter_close")],
        ],
        precise: false,
    },
    Hook {
        name: "task exit",
        why: "a task exited (its fd table is closed by the kernel)",
        alternatives: &[
            &[raw(
                "raw_sched_process_exit",
                "sched_process_exit",
                &[(0, "struct task_struct *")],
            )],
            &[tp("sched_process_exit", "sched/sched_process_exit")],
        ],
        precise: false,
    },
    Hook {
        name: "SIGKILL",
        why: "who killed whom",
        alternatives: &[
            &[raw(
                "raw_signal_generate",
                "signal_generate",
                &[
                    (0, "int"),
                    (2, "struct task_struct *"),
                    (3, "int"),
                    (4, "int"),
                ],
            )],
            &[tp("signal_generate", "signal/signal_generate")],
        ],
        precise: false,
    },
    Hook {
        name: "io_uring rings",
        why: "rings created, files registered into them",
        alternatives: &[
            &[
                URING_CREATE_RAW,
                URING_REGISTER_RAW,
                REGISTER_ENTER_SYS,
                REGISTER_EXIT_SYS,
            ],
            &[
                tp("io_uring_create", "io_uring/io_uring_create"),
                tp("io_uring_register", "io_uring/io_uring_register"),
                REGISTER_ENTER_SYS,
                REGISTER_EXIT_SYS,
            ],
            &[
                tp("io_uring_create", "io_uring/io_uring_create"),
                tp("io_uring_register", "io_uring/io_uring_register"),
                tp(
                    "sys_enter_io_uring_register",
                    "syscalls/sys_enter_io_uring_register",
                ),
                tp(
                    "sys_exit_io_uring_register",
                    "syscalls/sys_exit_io_uring_register",
                ),
            ],
        ],
        precise: false,
    },
    Hook {
        name: "Linux AIO",
        why: "AIO requests submitted and reaped per process (in flight ones hold their files; a dying process waits for them in exit_aio)",
        alternatives: &[
            &[
                sys("raw_sys_enter_io_submit", "sys_enter_io_submit"),
                sys("raw_sys_exit_io_submit", "sys_exit_io_submit"),
                sys("raw_sys_exit_io_getevents_family", "sys_exit_io_getevents"),
                sys("raw_sys_exit_io_getevents_family", "sys_exit_io_pgetevents"),
                sys("raw_sys_exit_io_destroy", "sys_exit_io_destroy"),
                sys("raw_sys_exit_io_setup", "sys_exit_io_setup"),
            ],
            &[
                tp("sys_enter_io_submit", "syscalls/sys_enter_io_submit"),
                tp("sys_exit_io_submit", "syscalls/sys_exit_io_submit"),
                tp(
                    "sys_exit_io_getevents_family",
                    "syscalls/sys_exit_io_getevents",
                ),
                tp(
                    "sys_exit_io_getevents_family",
                    "syscalls/sys_exit_io_pgetevents",
                ),
                tp("sys_exit_io_destroy", "syscalls/sys_exit_io_destroy"),
                tp("sys_exit_io_setup", "syscalls/sys_exit_io_setup"),
            ],
        ],
        precise: false,
    },
    Hook {
        name: "io_uring requests",
        why: "requests holding files while in flight",
        // `io_uring_complete` passes the CQE from 6.13 on, its fields before.
        alternatives: &[
            &[
                URING_FILE_GET_RAW,
                raw(
                    "raw_io_uring_complete",
                    "io_uring_complete",
                    &[
                        (0, "struct io_ring_ctx *"),
                        (1, "void *"),
                        (2, "struct io_uring_cqe *"),
                    ],
                ),
            ],
            &[
                URING_FILE_GET_RAW,
                raw(
                    "raw_io_uring_complete_args",
                    "io_uring_complete",
                    &[
                        (0, "void *"),
                        (1, "void *"),
                        (3, "int"),
                        (4, "unsigned int"),
                    ],
                ),
            ],
            &[
                tp("io_uring_file_get", "io_uring/io_uring_file_get"),
                tp("io_uring_complete", "io_uring/io_uring_complete"),
            ],
        ],
        precise: false,
    },
    Hook {
        name: "file locks",
        why: "lock conflicts (flock, POSIX and OFD locks) with their holder, and the releases",
        alternatives: &[
            &[
                raw("raw_flock_lock_inode", "flock_lock_inode", LOCK_RAW_ARGS),
                raw("raw_posix_lock_inode", "posix_lock_inode", LOCK_RAW_ARGS),
            ],
            &[
                tp("flock_lock_inode", "filelock/flock_lock_inode"),
                tp("posix_lock_inode", "filelock/posix_lock_inode"),
            ],
        ],
        precise: false,
    },
    Hook {
        name: "lock calls",
        why: "flock(2)/fcntl(2) lock calls that met a conflict: their result and wait time",
        alternatives: &[
            &[
                sys("raw_sys_enter_flock", "sys_enter_flock"),
                sys("raw_sys_enter_fcntl", "sys_enter_fcntl"),
                sys("raw_sys_exit_lock_call", "sys_exit_flock"),
                sys("raw_sys_exit_lock_call", "sys_exit_fcntl"),
            ],
            &[
                tp("sys_enter_flock", "syscalls/sys_enter_flock"),
                tp("sys_enter_fcntl", "syscalls/sys_enter_fcntl"),
                tp("sys_exit_lock_call", "syscalls/sys_exit_flock"),
                tp("sys_exit_lock_call", "syscalls/sys_exit_fcntl"),
            ],
        ],
        precise: false,
    },
    Hook {
        name: "test markers",
        why: "fstests' `run fstests <test>` kernel log lines, in order with the records",
        alternatives: &[
            &[raw(
                "raw_console",
                "console",
                &[(0, "char *"), (1, "long unsigned int")],
            )],
            &[tp("console", "printk/console")],
        ],
        precise: false,
    },
    Hook {
        name: "deletes",
        why: "a delete that left a file held by an io_uring ring or request: space not freed",
        alternatives: &[
            &[
                sys("raw_sys_exit_unlink_family", "sys_exit_unlink"),
                sys("raw_sys_exit_unlink_family", "sys_exit_unlinkat"),
            ],
            &[
                tp("sys_exit_unlink_family", "syscalls/sys_exit_unlink"),
                tp("sys_exit_unlink_family", "syscalls/sys_exit_unlinkat"),
            ],
        ],
        precise: false,
    },
    Hook {
        name: "kmem_cache alloc",
        why: "slab allocations (file births are counted here)",
        alternatives: &[
            &[raw(
                "raw_kmem_cache_alloc",
                "kmem_cache_alloc",
                &[(2, "struct kmem_cache *")],
            )],
            &[tp("kmem_cache_alloc", "kmem/kmem_cache_alloc")],
        ],
        precise: false,
    },
    Hook {
        name: "kmem_cache free",
        why: "slab frees (counted; allocation tracking; file releases without a __fput hook; exiting tasks' fd tables and cwd/root let go)",
        alternatives: &[
            CACHE_FREE_RAW,
            &[tp("kmem_cache_free", "kmem/kmem_cache_free")],
        ],
        precise: false,
    },
    Hook {
        name: "kmalloc/kfree",
        why: "kmalloc allocations (counted)",
        alternatives: &[
            &[
                raw("raw_kmalloc", "kmalloc", &[]),
                raw("raw_kfree", "kfree", &[]),
                raw("raw_kfree_twin", "kfree", &[]),
            ],
            &[tp("kmalloc", "kmem/kmalloc"), tp("kfree", "kmem/kfree")],
        ],
        precise: false,
    },
];

/// The attach-time snapshot of existing fds.
pub const SNAPSHOT_PROGRAM: &str = "snapshot_task_file";

/// The task scan after a failed umount (cwd/root, exiting tasks and their stacks).
pub const TASK_SCAN_PROGRAM: &str = "task_scan";

/// The VMA scan iterator program (`iter/task_vma`), run at a failed umount.
pub const VMA_SCAN_PROGRAM: &str = "vma_scan";

/// What became of one logical hook.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HookStatus {
    pub hook: &'static str,
    pub why: &'static str,
    /// The mechanism that serves it, if any.
    pub mechanism: Option<Mechanism>,
    /// The attach points used (`category/name` or function).
    pub points: Vec<String>,
    /// Why better mechanisms, or all of them, failed.
    pub notes: Vec<String>,
    /// A hook of the full-kernel tier (fentry/kprobe on the kernel function).
    pub precise: bool,
    /// `tracer doctor`: the function-level programs of this hook that were not used, loaded
    /// anyway to show they pass this kernel's verifier.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spare_loads: Vec<SpareLoad>,
}

/// One unused program of a precise hook, loaded (not attached) by `tracer doctor`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpareLoad {
    pub program: &'static str,
    pub mechanism: Mechanism,
    pub ok: bool,
    pub detail: String,
}

impl HookStatus {
    /// `hook`, served by nothing yet.
    pub fn unserved(hook: &Hook) -> HookStatus {
        HookStatus {
            hook: hook.name,
            why: hook.why,
            mechanism: None,
            points: vec![],
            notes: vec![],
            precise: hook.precise,
            spare_loads: vec![],
        }
    }

    pub fn live(&self) -> bool {
        self.mechanism.is_some()
    }
}

/// Why a program did not load: the last lines of the verifier's log.
pub(crate) fn verifier_error(e: &aya::programs::ProgramError) -> String {
    // The verifier log is long; its last lines say why.
    let full = format!("{e:#}");
    let lines: Vec<&str> = full.lines().collect();
    let tail = lines.len().saturating_sub(12);
    lines[tail..].join("\n")
}
