//! The JSON schema of the cross-run report, generated from its types
//! ([`super::summary::CrossRunReport`]) by `schemars`. The committed copy,
//! `tracer/schema/cross-run-report.schema.json`, must equal what this generates (a test
//! checks it; `UPDATE_SCHEMA=1 cargo test -p tracer --test runs` rewrites it).

use super::summary::{CrossRunReport, SCHEMA_VERSION};

/// The schema as pretty JSON, ending in a newline.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(CrossRunReport);
    schema.insert(
        "description".to_string(),
        serde_json::json!(format!(
            "tracer's cross-run report (`tracer report --format json` over several recordings), schema_version {SCHEMA_VERSION}."
        )),
    );
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}
