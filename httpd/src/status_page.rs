//! The status report as a small HTML page for people (`/status.html`, or `/status` asked for
//! with `Accept: text/html`). Every value is escaped; the page has no script and loads nothing.

use std::fmt::Write;

use crate::metrics::Tally;
use crate::node_status::NodeStatus;

/// Escapes `text` for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether a request with this `Accept` header wants the HTML page rather than JSON: it names
/// `text/html`, and names it before `application/json` if it names both.
pub fn prefers_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let position = |media: &str| {
        accept.split(',').position(|range| {
            range
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(media))
        })
    };
    match (position("text/html"), position("application/json")) {
        (Some(html), Some(json)) => html < json,
        (html, _) => html.is_some(),
    }
}

/// The page.
pub fn render(status: &NodeStatus) -> String {
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>MFT node {id}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}\
         .FAIL,.bad{{color:#b00}}.PASS,.good{{color:#070}}</style></head><body>\n\
         <h1>MFT node {id}: <span class=\"{class}\">{overall}</span></h1>\n\
         <p>Transfer mode: {mode}. Report made at {at}. Mount point {mount}: {mounted}.</p>\n",
        id = escape(&status.node_id),
        class = if status.ok { "good" } else { "bad" },
        overall = if status.ok { "OK" } else { "NOT OK" },
        mode = escape(status.transfer_mode),
        at = escape(&status.generated_at),
        mount = escape(&status.mount.path),
        mounted = if status.mount.mounted { "mounted" } else { "NOT MOUNTED" },
    );

    page.push_str("<h2>Alarms</h2>\n");
    if status.alarms.is_empty() {
        page.push_str("<p>None raised.</p>\n");
    } else {
        page.push_str("<ul>");
        for alarm in &status.alarms {
            let _ = write!(page, "<li class=\"bad\">{}</li>", escape(alarm));
        }
        page.push_str("</ul>\n");
    }

    let fsd = &status.fsd;
    let state = serde_json::to_value(fsd.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let _ = write!(
        page,
        "<h2>File server (fsd): {}</h2>\n<p>{}</p>\n",
        escape(&state),
        escape(&fsd.detail)
    );
    table(
        &mut page,
        fsd.checks
            .iter()
            .map(|c| (c.name.title(), verdict(c.ok), c.detail.as_str())),
    );

    let logd = &status.logd;
    let _ = writeln!(
        page,
        "<h2>Database (logd): {}</h2>",
        if logd.reachable {
            "reachable"
        } else {
            "unreachable"
        }
    );
    if let Some(error) = &logd.error {
        let _ = writeln!(page, "<p>{}</p>", escape(error));
    }
    table(
        &mut page,
        logd.checks
            .iter()
            .map(|c| (c.name.as_str(), verdict(c.ok), c.detail.as_str())),
    );

    let counters = &status.counters;
    let _ =
        write!(
        page,
        "<h2>Counters</h2>\n<table><tr><th></th><th>files</th><th>bytes</th></tr>\n{}{}{}{}</table>\n</body></html>\n",
        counter_row("uploaded, total", counters.uploaded),
        counter_row("downloaded, total", counters.downloaded),
        counter_row(&format!("uploaded, last {} s", counters.timeslice_seconds), counters.uploaded_last_timeslice),
        counter_row(&format!("downloaded, last {} s", counters.timeslice_seconds), counters.downloaded_last_timeslice),
    );
    page
}

/// A table of checks: title, PASS/FAIL, detail.
fn table<'a>(page: &mut String, rows: impl Iterator<Item = (&'a str, &'static str, &'a str)>) {
    page.push_str("<table>\n");
    for (title, verdict, detail) in rows {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"{verdict}\">{verdict}</td><td>{}</td></tr>",
            escape(title),
            escape(detail)
        );
    }
    page.push_str("</table>\n");
}

fn counter_row(label: &str, tally: Tally) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
        escape(label),
        tally.files,
        tally.bytes
    )
}

#[cfg(test)]
mod tests {
    use logd::LogdError;

    use super::*;
    use crate::node_status::tests::{fsd_status, healthy};
    use crate::node_status::Observations;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn html_is_chosen_only_when_asked_for() {
        assert!(prefers_html(Some(
            "text/html,application/xhtml+xml,*/*;q=0.8"
        )));
        assert!(prefers_html(Some("TEXT/HTML; q=0.9")));
        assert!(!prefers_html(Some("application/json, text/html")));
        assert!(!prefers_html(Some("*/*")));
        assert!(!prefers_html(None));
    }

    #[test]
    fn the_page_shows_checks_alarms_and_counters_escaped() {
        let mut fsd = fsd_status("2025-03-01T11:59:55Z", &["MftExtFsFreeSpaceWarn"]);
        fsd.checks[0].detail = "<script>alert(1)</script>".into();
        let status = NodeStatus::assemble(Observations {
            fsd: Ok(fsd),
            logd: Err(LogdError::Unavailable(
                "cannot connect to /run/mft/logd.sock".into(),
            )),
            ..healthy()
        });
        let page = render(&status);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("NOT OK"));
        assert!(page.contains("<li class=\"bad\">MftExtFsFreeSpaceWarn</li>"));
        assert!(page.contains("Verify external file server reachability"));
        assert!(page.contains("Database (logd): unreachable"));
        assert!(page.contains("cannot connect to /run/mft/logd.sock"));
        assert!(
            page.contains("<td>uploaded, last 0 s</td><td>0</td><td>0</td>"),
            "{page}"
        );
    }
}
