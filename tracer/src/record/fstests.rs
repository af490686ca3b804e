//! Findings where fstests users look.
//!
//! People who run fstests read `results/` (each test's `.full` and `.out.bad`) and, in CI
//! (kdevops and others), `result.xml` (`./check -R xunit`); few of them will open a tracer
//! report. So when `tracer run` ran `./check` in an fstests checkout (the command's
//! directory or the current one has `check` and `common/rc`), each test with an EBUSY
//! story, a leak (a leak report with objects, or a detached mount still pinned at its
//! end) or lost records gets `<test>.tracer.txt` beside its `.full`, in the directory
//! check wrote the test's results to (`$RESULT_BASE`, or `$RESULT_BASE/<section>` with
//! config sections; `RESULT_BASE` defaults to `results/` of the checkout), mode 0600 (it
//! holds kernel addresses), holding the report's header and that test's section of the
//! text report. When that directory has a `result.xml`, the test's `<testcase>` gets a
//! short summary and the file's path in its `<system-out>` (appended to the one check
//! wrote for a failed test, or a new one: fstests' `doc/xunit.xsd` allows no other child
//! there). The XML is rewritten event by event with `quick-xml`, and the result parsed
//! again before it replaces the original.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Context, Result, bail};
use quick_xml::{
    Reader, Writer,
    events::{BytesEnd, BytesStart, BytesText, Event},
};
use serde_json::Value;

use crate::report::{self, Report, ReportFormat};

/// An fstests checkout `tracer run` ran `check` in.
#[derive(Clone, Debug)]
pub struct Checkout {
    pub root: PathBuf,
    /// `$RESULT_BASE` (absolute), else `<root>/results`.
    pub result_base: PathBuf,
}

fn is_checkout(dir: &Path) -> bool {
    dir.join("check").is_file() && dir.join("common/rc").is_file()
}

impl Checkout {
    /// The checkout of the command `argv` run from `cwd`: the directory of `argv[0]` when it
    /// names a path, else `cwd`; `result_base` is the `RESULT_BASE` the command sees.
    pub fn detect(cwd: &Path, argv: &[String], result_base: Option<&str>) -> Option<Checkout> {
        let mut dirs = Vec::new();
        if let Some(cmd) = argv.first().filter(|c| c.contains('/'))
            && let Some(parent) = Path::new(cmd).parent()
        {
            dirs.push(cwd.join(parent));
        }
        dirs.push(cwd.to_path_buf());
        let root = dirs.into_iter().find(|d| is_checkout(d))?;
        let root = root.canonicalize().unwrap_or(root);
        let result_base = match result_base.filter(|s| !s.is_empty()) {
            // check resolves a relative RESULT_BASE from where it runs: its own directory.
            Some(b) => root.join(b),
            None => root.join("results"),
        };
        Some(Checkout { root, result_base })
    }
}

/// fstests' own verdicts, from the `check.log` files under a checkout's results: their
/// lengths before the command ran, so that only what this run appended is read.
#[derive(Clone, Debug)]
pub struct CheckLogs {
    base: PathBuf,
    before: BTreeMap<PathBuf, u64>,
}

impl CheckLogs {
    /// For `tracer run CMD` from the current directory: `None` when CMD is not fstests'
    /// `check` in a checkout.
    pub fn before_run(command: &[String]) -> Option<CheckLogs> {
        let cwd = std::env::current_dir().ok()?;
        let base = std::env::var("RESULT_BASE").ok();
        let co = Checkout::detect(&cwd, command, base.as_deref())?;
        Some(Self::at(&co.result_base))
    }

    pub fn at(base: &Path) -> CheckLogs {
        let before = Self::logs(base)
            .into_iter()
            .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len())))
            .collect();
        CheckLogs {
            base: base.to_path_buf(),
            before,
        }
    }

    /// `check.log` in the results directory and in its config sections' subdirectories.
    fn logs(base: &Path) -> Vec<PathBuf> {
        base_and_sections(base)
            .into_iter()
            .map(|d| d.join("check.log"))
            .filter(|p| p.is_file())
            .collect()
    }

    /// The verdicts check appended since [`CheckLogs::at`]: (test, `pass`/`fail`/`notrun`),
    /// sorted, each pair once.
    pub fn results(&self) -> Vec<(String, String)> {
        let mut out = std::collections::BTreeSet::new();
        for p in Self::logs(&self.base) {
            let from = self.before.get(&p).copied().unwrap_or(0);
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            // Shorter than before: rewritten, read it all.
            let from = if (bytes.len() as u64) < from { 0 } else { from };
            let text = String::from_utf8_lossy(&bytes[from as usize..]);
            out.extend(parse_check_log(&text));
        }
        out.into_iter().collect()
    }
}

/// The verdicts in check.log text: each block's `Ran:`, `Not run:` and `Failures:` lines
/// (a failure or a test not run is also listed in `Ran:` by some versions of check).
pub fn parse_check_log(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut block: BTreeMap<String, &str> = BTreeMap::new();
    let mut flush = |block: &mut BTreeMap<String, &str>| {
        out.extend(
            std::mem::take(block)
                .into_iter()
                .map(|(t, s)| (t, s.to_string())),
        );
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Kernel version:") {
            flush(&mut block);
            continue;
        }
        let (list, status) = if let Some(l) = line.strip_prefix("Ran:") {
            (l, "pass")
        } else if let Some(l) = line.strip_prefix("Not run:") {
            (l, "notrun")
        } else if let Some(l) = line.strip_prefix("Failures:") {
            (l, "fail")
        } else {
            continue;
        };
        for t in list.split_whitespace() {
            let e = block.entry(t.to_string()).or_insert(status);
            if status != "pass" {
                *e = status;
            }
        }
    }
    flush(&mut block);
    out
}

/// What the report says of one test, when it says something worth a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Finding {
    pub test: String,
    pub ebusy_stories: usize,
    /// Stories with a verdict nothing traced explains.
    pub unexplained: usize,
    /// Leak reports with objects.
    pub leak_reports: usize,
    pub leaked_objects: u64,
    /// Detached mounts still pinned at the end of the test.
    pub pinned_at_end: usize,
    /// Records lost over the whole recording (the report does not split them by test).
    pub records_lost: u64,
    /// The `.tracer.txt` files written.
    pub files: Vec<PathBuf>,
}

impl Finding {
    /// One line for `result.xml` and stderr: "2 EBUSY stories (1 unexplained), ...".
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.ebusy_stories > 0 {
            parts.push(format!(
                "{} EBUSY {} ({} unexplained)",
                self.ebusy_stories,
                if self.ebusy_stories == 1 {
                    "story"
                } else {
                    "stories"
                },
                self.unexplained
            ));
        }
        if self.leak_reports > 0 {
            parts.push(format!(
                "{} leak {} ({} objects)",
                self.leak_reports,
                if self.leak_reports == 1 {
                    "report"
                } else {
                    "reports"
                },
                self.leaked_objects
            ));
        }
        if self.pinned_at_end > 0 {
            parts.push(format!(
                "{} detached mount(s) still pinned at the end",
                self.pinned_at_end
            ));
        }
        if self.records_lost > 0 {
            parts.push(format!(
                "{} records lost during the recording",
                self.records_lost
            ));
        }
        parts.join(", ")
    }
}

/// The findings per test of a JSON report (`report::json::value`), tests in order.
pub fn findings(report: &Value) -> Vec<Finding> {
    let lost = report["recording"]["records_lost"].as_u64().unwrap_or(0);
    let mut by_test: BTreeMap<String, Finding> = BTreeMap::new();
    let mut order = Vec::new();
    for t in report["tests"].as_array().into_iter().flatten() {
        let Some(name) = t["test"].as_str() else {
            continue;
        };
        let f = by_test.entry(name.to_string()).or_insert_with(|| {
            order.push(name.to_string());
            Finding {
                test: name.to_string(),
                records_lost: lost,
                ..Default::default()
            }
        });
        let ebusy = t["ebusy_stories"].as_array().into_iter().flatten();
        for s in ebusy.filter(|s| s["lock"] != true && s["space"] != true) {
            f.ebusy_stories += 1;
            if tracer_fs::verdict::story_unexplained(s) {
                f.unexplained += 1;
            }
        }
        let reports = t["leaks"]["allocations"]["leak_reports"].as_array();
        for lr in reports.into_iter().flatten() {
            // Confirmed leaks only (all objects of a report without classes).
            let all = lr["objects"].as_u64().unwrap_or(0);
            let objects = lr["confirmed"].as_u64().unwrap_or(all);
            if objects > 0 {
                f.leak_reports += 1;
                f.leaked_objects += objects;
            }
        }
        f.pinned_at_end += t["leaks"]["detached_mounts_pinned_at_end"]
            .as_array()
            .map_or(0, Vec::len);
    }
    order
        .into_iter()
        .filter_map(|t| by_test.remove(&t))
        .filter(|f| {
            f.ebusy_stories > 0 || f.leak_reports > 0 || f.pinned_at_end > 0 || f.records_lost > 0
        })
        .collect()
}

/// The header of a text report and its sections by test (a test run twice has two).
fn split_text(text: &str) -> (String, BTreeMap<String, Vec<String>>) {
    let mut header = String::new();
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.split_inclusive('\n') {
        let title = line
            .trim_end()
            .strip_prefix("== ")
            .and_then(|l| l.strip_suffix(" =="));
        if let Some(title) = title {
            if let Some((t, body)) = current.take() {
                sections.entry(t).or_default().push(body);
            }
            current = Some((title.to_string(), line.to_string()));
            continue;
        }
        match &mut current {
            Some((_, body)) => body.push_str(line),
            None => header.push_str(line),
        }
    }
    if let Some((t, body)) = current {
        sections.entry(t).or_default().push(body);
    }
    (header, sections)
}

/// A results directory and its subdirectories (config sections), sorted.
fn base_and_sections(base: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![base.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(base) {
        let mut subs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        subs.sort();
        dirs.extend(subs);
    }
    dirs
}

/// The directories check wrote `test`'s results to in this run: `result_base` or one of
/// its subdirectories (config sections) with `<test>.full`, `.out.bad` or `.notrun`
/// modified since `since`.
fn result_dirs(base: &Path, test: &str, since: SystemTime) -> Vec<PathBuf> {
    base_and_sections(base)
        .into_iter()
        .filter(|dir| {
            ["full", "out.bad", "notrun"].iter().any(|ext| {
                std::fs::metadata(dir.join(format!("{test}.{ext}")))
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m >= since)
            })
        })
        .collect()
}

/// Writes the findings of the replayed recording `r` (every test, redacted or not as it
/// was replayed) into `checkout`'s results (tests whose results were written since
/// `since`), and notes them in `result.xml` where there is one.
pub fn write_findings(
    r: &mut Report,
    checkout: &Checkout,
    since: SystemTime,
) -> Result<Vec<Finding>> {
    let value = report::json::value(r);
    let mut found = findings(&value);
    if found.is_empty() {
        return Ok(found);
    }
    let text = r.render(ReportFormat::Text);
    let (header, sections) = split_text(&text);
    // result.xml files to note, with the findings of each.
    let mut xml_notes: BTreeMap<PathBuf, Vec<(String, String)>> = BTreeMap::new();
    for f in &mut found {
        let body = sections
            .get(&f.test)
            .map(|v| v.concat())
            .unwrap_or_default();
        for dir in result_dirs(&checkout.result_base, &f.test, since) {
            let path = dir.join(format!("{}.tracer.txt", f.test));
            let mut file = super::create_private(&path, true)
                .with_context(|| format!("creating {}", path.display()))?;
            write!(file, "{header}{body}")
                .with_context(|| format!("writing {}", path.display()))?;
            let xml = dir.join("result.xml");
            if xml.is_file() {
                xml_notes.entry(xml).or_default().push((
                    f.test.clone(),
                    format!(
                        "tracer: {}; this test in the tracer report: {}",
                        f.summary(),
                        path.display()
                    ),
                ));
            }
            f.files.push(path);
        }
    }
    for (xml, notes) in xml_notes {
        note_in_xunit(&xml, &notes.into_iter().collect())
            .with_context(|| format!("noting the tracer's findings in {}", xml.display()))?;
    }
    Ok(found)
}

/// Adds `notes[test]` to the `<system-out>` of each `<testcase name="test">` of the xunit
/// file `path` (replaced only once the new document parses).
pub fn note_in_xunit(path: &Path, notes: &BTreeMap<String, String>) -> Result<()> {
    let xml = std::fs::read_to_string(path)?;
    let out = add_notes(&xml, notes)?;
    check_well_formed(&out).context("the rewritten result.xml does not parse")?;
    let tmp = path.with_extension("xml.tracer-tmp");
    std::fs::write(&tmp, &out)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The name of a `<testcase>`.
fn testcase_name(e: &BytesStart) -> Result<Option<String>> {
    Ok(match e.try_get_attribute("name")? {
        Some(a) => Some(
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)?
                .into_owned(),
        ),
        None => None,
    })
}

fn add_notes(xml: &str, notes: &BTreeMap<String, String>) -> Result<String> {
    let mut reader = Reader::from_str(xml);
    let mut writer = Writer::new(Vec::new());
    // The note of the testcase we are in, and whether it went into a <system-out> yet.
    let mut current: Option<&String> = None;
    let mut noted = false;
    let write_out = |w: &mut Writer<Vec<u8>>, note: &str| -> Result<()> {
        w.write_event(Event::Start(BytesStart::new("system-out")))?;
        w.write_event(Event::Text(BytesText::new(&format!("\n{note}\n"))))?;
        w.write_event(Event::End(BytesEnd::new("system-out")))?;
        Ok(())
    };
    loop {
        let ev = reader.read_event()?;
        match &ev {
            Event::Eof => break,
            Event::Start(e) if e.name().as_ref() == "testcase" => {
                current = testcase_name(e)?.and_then(|n| notes.get(&n));
                noted = false;
                writer.write_event(ev)?;
            }
            Event::Empty(e) if e.name().as_ref() == "testcase" => {
                match testcase_name(e)?.and_then(|n| notes.get(&n)) {
                    Some(note) => {
                        writer.write_event(Event::Start(e.clone()))?;
                        write_out(&mut writer, note)?;
                        writer.write_event(Event::End(BytesEnd::new("testcase")))?;
                    }
                    None => writer.write_event(ev)?,
                }
            }
            Event::End(e) if e.name().as_ref() == "system-out" && current.is_some() => {
                let note = current.unwrap();
                writer.write_event(Event::Text(BytesText::new(&format!("\n{note}\n"))))?;
                writer.write_event(ev)?;
                noted = true;
            }
            Event::End(e) if e.name().as_ref() == "testcase" => {
                if let Some(note) = current.take()
                    && !noted
                {
                    writer.write_event(Event::Text(BytesText::new("\t")))?;
                    write_out(&mut writer, note)?;
                    writer.write_event(Event::Text(BytesText::new("\n\t")))?;
                }
                writer.write_event(ev)?;
            }
            _ => writer.write_event(ev)?,
        }
    }
    String::from_utf8(writer.into_inner()).context("the rewritten XML is not UTF-8")
}

/// Reads every event of `xml` (end tags checked against their start tags).
pub fn check_well_formed(xml: &str) -> Result<()> {
    let mut reader = Reader::from_str(xml);
    let mut depth = 0i64;
    loop {
        match reader.read_event()? {
            Event::Eof => break,
            Event::Start(_) => depth += 1,
            Event::End(_) => depth -= 1,
            _ => {}
        }
    }
    if depth != 0 {
        bail!("{depth} element(s) left open");
    }
    Ok(())
}

/// `tracer run`'s step after the report: findings into an fstests checkout, said on stderr.
pub fn after_run(r: &mut Report, command: &[String], since: SystemTime) {
    let cwd = std::env::current_dir().unwrap_or_default();
    let base = std::env::var("RESULT_BASE").ok();
    let Some(checkout) = Checkout::detect(&cwd, command, base.as_deref()) else {
        return;
    };
    match write_findings(r, &checkout, since) {
        Ok(found) => {
            for f in found {
                for p in &f.files {
                    eprintln!("tracer: {}: {} ({})", f.test, f.summary(), p.display());
                }
                if f.files.is_empty() {
                    eprintln!(
                        "tracer: {}: {} (no results of this run under {})",
                        f.test,
                        f.summary(),
                        checkout.result_base.display()
                    );
                }
            }
        }
        Err(e) => eprintln!(
            "tracer: could not write the findings into {}: {e:#}",
            checkout.result_base.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let p =
                std::env::temp_dir().join(format!("tracer-{name}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The xfstests-like fixture recording with allocation tracking, replayed.
    fn fixture() -> Report {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-xfstests-alloc.trace");
        report::replay_file(&path, &report::ReportOptions::default()).unwrap()
    }

    /// A checkout with check's results of generic/001, 002 and 388 (in a config section
    /// `xfs_4k`), and the result.xml of `check -R xunit` (001 failed, 002 passed, 388 as an
    /// empty element).
    fn checkout(dir: &Path) -> Checkout {
        std::fs::write(dir.join("check"), "#!/bin/bash\n").unwrap();
        std::fs::create_dir_all(dir.join("common")).unwrap();
        std::fs::write(dir.join("common/rc"), "").unwrap();
        let section = dir.join("results/xfs_4k");
        std::fs::create_dir_all(section.join("generic")).unwrap();
        for t in ["001", "002", "388"] {
            std::fs::write(section.join(format!("generic/{t}.full")), "log\n").unwrap();
        }
        std::fs::write(section.join("generic/001.out.bad"), "bad\n").unwrap();
        std::fs::write(
            section.join("result.xml"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"xfstests\" \
             failures=\"1\" tests=\"3\">\n\t<properties>\n\t\t<property name=\"FSTYP\" \
             value=\"xfs\"/>\n\t</properties>\n\t<testcase classname=\"xfstests.xfs_4k\" \
             name=\"generic/001\" time=\"3\">\n\t\t<failure message=\"- output mismatch \
             &amp; more\" type=\"TestFail\" />\n\t\t<system-out>\n<![CDATA[\nlog <&> \
             ]]>\n\t\t</system-out>\n\t</testcase>\n\t<testcase classname=\"xfstests.xfs_4k\" \
             name=\"generic/002\" time=\"1\">\n\t</testcase>\n\t<testcase \
             classname=\"xfstests.xfs_4k\" name=\"generic/388\" time=\"2\"/>\n</testsuite>\n",
        )
        .unwrap();
        Checkout::detect(dir, &["./check".to_string()], None).expect("a checkout")
    }

    /// The text of each `<system-out>` of `<testcase name=test>`.
    fn system_out(xml: &str, test: &str) -> Option<String> {
        let mut reader = Reader::from_str(xml);
        let mut inside = false;
        let mut in_out = false;
        let mut text = None::<String>;
        loop {
            match reader.read_event().unwrap() {
                Event::Eof => return text,
                Event::Start(e) if e.name().as_ref() == "testcase" => {
                    inside = testcase_name(&e).unwrap().as_deref() == Some(test);
                }
                Event::Start(e) if e.name().as_ref() == "system-out" && inside => {
                    in_out = true;
                    text.get_or_insert_default();
                }
                Event::End(e) if e.name().as_ref() == "system-out" => in_out = false,
                Event::Text(t) if in_out => text.as_mut().unwrap().push_str(&t.xml10_content()),
                Event::CData(t) if in_out => text.as_mut().unwrap().push_str(&t.into_inner()),
                _ => {}
            }
        }
    }

    #[test]
    fn detects_a_checkout_from_the_command_or_the_cwd() {
        let tmp = TempDir::new("detect");
        let co = checkout(&tmp.0);
        assert_eq!(co.result_base, co.root.join("results"));
        let other = TempDir::new("detect-other");
        let via_argv = Checkout::detect(
            &other.0,
            &[tmp.0.join("check").display().to_string(), "-g".into()],
            Some("/srv/res"),
        )
        .expect("found through argv[0]");
        assert_eq!(via_argv.root, co.root);
        assert_eq!(via_argv.result_base, PathBuf::from("/srv/res"));
        assert!(Checkout::detect(&other.0, &["make".to_string()], None).is_none());
    }

    #[test]
    fn findings_go_beside_the_results_and_into_result_xml() {
        let tmp = TempDir::new("findings");
        let co = checkout(&tmp.0);
        let since = SystemTime::now() - std::time::Duration::from_secs(60);
        let found = write_findings(&mut fixture(), &co, since).unwrap();
        // The fixture: generic/001 has an EBUSY story and a 6-object leak report, generic/002
        // a 3-object one, generic/388 an EBUSY story and a leak report without objects.
        let names: Vec<&str> = found.iter().map(|f| f.test.as_str()).collect();
        assert_eq!(names, ["generic/001", "generic/002", "generic/388"]);
        assert_eq!((found[0].ebusy_stories, found[0].leaked_objects), (1, 6));
        assert_eq!((found[1].ebusy_stories, found[1].leaked_objects), (0, 3));
        assert_eq!((found[2].ebusy_stories, found[2].leak_reports), (1, 0));
        let section = co.result_base.join("xfs_4k");
        for f in &found {
            let path = section.join(format!("{}.tracer.txt", f.test));
            assert_eq!(f.files, std::slice::from_ref(&path));
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("tracer report of "), "{text}");
            assert!(text.contains(&format!("\n== {} ==\n", f.test)), "{text}");
            // Only this test's section.
            assert_eq!(text.matches("\n== ").count(), 1, "{text}");
        }
        let xml = std::fs::read_to_string(section.join("result.xml")).unwrap();
        check_well_formed(&xml).unwrap();
        assert!(xml.contains("&amp; more"), "{xml}");
        let out001 = system_out(&xml, "generic/001").unwrap();
        assert!(
            out001.contains("log <&>"),
            "check's own output kept: {out001}"
        );
        assert!(
            out001.contains("tracer: 1 EBUSY story (0 unexplained), 1 leak report (6 objects)"),
            "{out001}"
        );
        assert!(out001.contains("generic/001.tracer.txt"), "{out001}");
        let out002 = system_out(&xml, "generic/002").unwrap();
        assert!(out002.contains("generic/002.tracer.txt"), "{out002}");
        let out388 = system_out(&xml, "generic/388").unwrap();
        assert!(out388.contains("1 EBUSY story"), "{out388}");
        // Each testcase has one system-out.
        assert_eq!(xml.matches("<system-out>").count(), 3, "{xml}");
    }

    #[test]
    fn results_of_an_earlier_run_get_nothing() {
        let tmp = TempDir::new("stale");
        let co = checkout(&tmp.0);
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        let found = write_findings(&mut fixture(), &co, later).unwrap();
        assert!(found.iter().all(|f| f.files.is_empty()));
        let xml = std::fs::read_to_string(co.result_base.join("xfs_4k/result.xml")).unwrap();
        assert!(!xml.contains("tracer:"), "{xml}");
    }

    #[test]
    fn check_log_verdicts_of_this_run_only() {
        let dir = TempDir::new("checklog");
        let log = dir.0.join("check.log");
        std::fs::write(
            &log,
            "\nKernel version: 6.18\nFri Dec  4 10:00:00 UTC 2026\nRan: generic/001\nFailures: generic/001\nFailed 1 of 1 tests\n",
        )
        .unwrap();
        let logs = CheckLogs::at(&dir.0);
        std::fs::create_dir_all(dir.0.join("xfs")).unwrap();
        let block = "\nKernel version: 6.18\nSat Dec  5 10:00:00 UTC 2026\nRan: generic/001 generic/002 generic/003\nNot run: generic/003\nFailures: generic/002\nFailed 1 of 3 tests\n";
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(block.as_bytes()).unwrap();
        // A config section's own log (a new file: read whole).
        std::fs::write(
            dir.0.join("xfs/check.log"),
            "\nKernel version: 6.18\nSat Dec  5 10:00:00 UTC 2026\nRan: xfs/100\nPassed all 1 tests\n",
        )
        .unwrap();
        let got = logs.results();
        let want: Vec<(String, String)> = [
            ("generic/001", "pass"),
            ("generic/002", "fail"),
            ("generic/003", "notrun"),
            ("xfs/100", "pass"),
        ]
        .iter()
        .map(|(t, s)| (t.to_string(), s.to_string()))
        .collect();
        assert_eq!(got, want);
    }
}
