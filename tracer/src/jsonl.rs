//! The headless output: one JSON object per line, for scripts and for `--no-tui`.

use std::io::Write;

use anyhow::Result;
use serde_json::json;
use tracer_fs::event::{Event, Payload};

use crate::{counters::Figures, kallsyms::Kallsyms, stream::Sink};

pub struct JsonLines<'a, W: Write> {
    out: W,
    syms: &'a Kallsyms,
}

impl<'a, W: Write> JsonLines<'a, W> {
    pub fn new(out: W, syms: &'a Kallsyms) -> Self {
        JsonLines { out, syms }
    }

    pub fn line(&mut self, v: &serde_json::Value) -> Result<()> {
        serde_json::to_writer(&mut self.out, v)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(())
    }

    fn name(&self, addr: u64) -> Option<String> {
        self.syms.resolve(addr).map(|(s, off)| {
            if off == 0 {
                s.name.clone()
            } else {
                format!("{}+{off:#x}", s.name)
            }
        })
    }
}

impl<W: Write> Sink for JsonLines<'_, W> {
    fn event(&mut self, ev: &Event) -> Result<()> {
        let mut v = json!({ "type": "event", "event": ev });
        // Function addresses are shown with their names too.
        if let Some(w) = ev.work {
            v["work_fn_name"] = json!(self.name(w.function));
        }
        if let Payload::WorkQueued { function, .. }
        | Payload::WorkStart { function, .. }
        | Payload::WorkEnd { function, .. }
        | Payload::WorkArmed { function, .. } = ev.payload
        {
            v["function_name"] = json!(self.name(function));
        }
        self.line(&v)
    }

    fn figures(&mut self, f: &Figures) -> Result<()> {
        self.line(&json!({ "type": "stats", "stats": f }))
    }

    fn bad_record(&mut self, err: &str) -> Result<()> {
        self.line(&json!({ "type": "error", "error": err }))
    }

    fn ready(&mut self) -> Result<()> {
        self.line(&json!({ "type": "ready" }))
    }
}
