//! `--redact`: kernel addresses replaced by stable tokens (`file#3`, `ring#1`, `req#2`,
//! `work#1`, `fn#4`, leaked objects `obj#2` and their call sites `site#1`, `addr#1`), so a
//! report can be shared without leaking the kernel's layout (KASLR) while one object keeps
//! one name throughout.
//!
//! Tokens are assigned in the order objects first appear in the recording, so every format
//! of the same recording uses the same tokens. Any other kernel-looking address left in
//! the output (`0x` and a value in the kernel half) becomes `addr#N`.

use std::collections::HashMap;

use tracer_fs::event::{Event, HolderRef, Payload};

/// Values from here up are kernel addresses (x86-64 and arm64 put the kernel in the upper
/// half; user space and small numbers stay readable).
const KERNEL_HALF: u64 = 1 << 47;

#[derive(Clone, Debug, Default)]
pub struct Redactor {
    enabled: bool,
    tokens: HashMap<u64, String>,
    next: HashMap<&'static str, u64>,
}

impl Redactor {
    pub fn new(enabled: bool) -> Self {
        Redactor {
            enabled,
            ..Default::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn name(&mut self, v: u64, kind: &'static str) {
        if v < KERNEL_HALF || self.tokens.contains_key(&v) {
            return;
        }
        let n = self.next.entry(kind).or_insert(0);
        *n += 1;
        self.tokens.insert(v, format!("{kind}#{n}"));
    }

    fn holder(&mut self, h: &HolderRef) {
        match *h {
            HolderRef::Fd { .. } | HolderRef::Mmap { .. } => {}
            HolderRef::UringFixed { ctx } => self.name(ctx, "ring"),
            HolderRef::UringReq { ctx, req } => {
                self.name(ctx, "ring");
                self.name(req, "req");
            }
        }
    }

    /// Learns the addresses an event carries, in order.
    pub fn observe(&mut self, ev: &Event) {
        if !self.enabled {
            return;
        }
        if let Some(w) = ev.work {
            self.name(w.work, "work");
            self.name(w.function, "fn");
        }
        match &ev.payload {
            Payload::FileRef(tracer_fs::event::FileRef { file, holder, .. })
            | Payload::FileUnref { file, holder, .. } => {
                self.name(*file, "file");
                self.holder(holder);
            }
            Payload::FileFree { file, .. } => self.name(*file, "file"),
            Payload::UringCreate { ctx, .. } | Payload::UringRegister { ctx, .. } => {
                self.name(*ctx, "ring")
            }
            Payload::UringReqDone { ctx, req, .. } => {
                self.name(*ctx, "ring");
                self.name(*req, "req");
            }
            Payload::WorkQueued { work, function, .. }
            | Payload::WorkStart { work, function }
            | Payload::WorkEnd { work, function }
            | Payload::WorkArmed { work, function, .. } => {
                self.name(*work, "work");
                self.name(*function, "fn");
            }
            _ => {}
        }
    }

    /// Learns the addresses of a leak report: its objects (`obj#N`) and their call sites
    /// (`site#N`).
    pub fn observe_leak(&mut self, k: &crate::record::alloc::LeakRecord) {
        if !self.enabled {
            return;
        }
        for o in &k.shown {
            self.name(o.ptr, "obj");
            self.name(o.call_site, "site");
        }
        for g in &k.groups {
            self.name(g.call_site, "site");
        }
        for p in &k.parts {
            for o in &p.shown {
                self.name(o.obj.ptr, "obj");
                self.name(o.obj.call_site, "site");
            }
            for g in &p.groups {
                self.name(g.group.call_site, "site");
            }
        }
    }

    /// Learns the call sites of the outstanding allocations (`site#N`).
    pub fn observe_live(&mut self, l: &crate::record::alloc::LiveAlloc) {
        if !self.enabled {
            return;
        }
        for s in &l.by_call_site {
            self.name(s.call_site, "site");
        }
        for g in &l.by_stack {
            self.name(g.call_site, "site");
        }
    }

    /// The token of an address (assigning one if new), or the address in hex.
    pub fn token(&mut self, v: u64) -> String {
        if !self.enabled || v < KERNEL_HALF {
            return format!("{v:#x}");
        }
        self.name(v, "addr");
        self.tokens[&v].clone()
    }

    /// Replaces every kernel-looking `0x…` in `text`.
    pub fn apply(&mut self, text: &str) -> String {
        let b = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut i = 0;
        while i + 2 < b.len() {
            let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
            if boundary && b[i] == b'0' && (b[i + 1] == b'x' || b[i + 1] == b'X') {
                let start = i + 2;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_hexdigit() {
                    j += 1;
                }
                let ends = j == b.len() || !b[j].is_ascii_alphanumeric();
                if j > start
                    && j - start <= 16
                    && ends
                    && let Ok(v) = u64::from_str_radix(&text[start..j], 16)
                    && v >= KERNEL_HALF
                {
                    out.push_str(&text[last..i]);
                    out.push_str(&self.token(v));
                    last = j;
                }
                i = j.max(i + 1);
                continue;
            }
            i += 1;
        }
        out.push_str(&text[last..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_fs::event::{NameKind, RefHow};

    fn ev(payload: Payload) -> Event {
        Event {
            ts_ns: 1,
            cpu: 0,
            pid: 1,
            tgid: 1,
            comm: "x".into(),
            work: None,
            payload,
        }
    }

    #[test]
    fn tokens_follow_first_appearance_and_replace_hex() {
        let mut r = Redactor::new(true);
        r.observe(&ev(Payload::FileRef(tracer_fs::event::FileRef {
            file: 0xffff_8880_0000_1000,
            holder: HolderRef::UringFixed {
                ctx: 0xffff_8880_0000_2000,
            },
            how: RefHow::UringRegister,
            mnt_id: 1,
            dev: 1,
            ino: 1,
            name_kind: NameKind::None,
            name: String::new(),
        })));
        r.observe(&ev(Payload::FileFree {
            file: 0xffff_8880_0000_3000,
            mnt_id: 1,
            ino: 2,
        }));
        let s = r.apply(
            "file 0xffff888000003000 and 0xffff888000001000 in ring 0xffff888000002000; \
             0x10 stays, 0xffffffff81000000 is new, io_work+0x1c stays",
        );
        assert_eq!(
            s,
            "file file#2 and file#1 in ring ring#1; 0x10 stays, addr#1 is new, io_work+0x1c stays"
        );
        // Stable: the same address keeps its token.
        assert_eq!(r.apply("\"0xffffffff81000000\""), "\"addr#1\"");
    }

    #[test]
    fn disabled_is_identity() {
        let mut r = Redactor::new(false);
        assert_eq!(r.apply("0xffff888000003000"), "0xffff888000003000");
    }
}
