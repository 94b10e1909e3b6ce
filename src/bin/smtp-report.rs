//! smtp-report: what to do with smtp-source's JSON reports. `merge`
//! adds up the reports of one run's shards into one report of the same
//! schema; `text` prints a report as `--report=text` does; `html` draws
//! one or more reports as one self-contained page. Output on stdout.

use std::io::Read;

use smtp_source::diag;
use smtp_source::report::Summary;
use smtp_source::report::{html, merge};

const USAGE: &str = "usage: smtp-report merge FILE...
       smtp-report --version
       smtp-report text FILE
       smtp-report html FILE...
FILE is a JSON report (--report-file, or --report=json output; in a log,
the last line that starts with {\"version\":1 is taken); - is stdin.
";

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    diag::init(b"smtp-report");
    let words: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    match words.as_slice() {
        ["--help" | "-h"] => diag::out(USAGE.as_bytes()),
        ["--version"] => diag::out(
            concat!("smtp-report ", env!("CARGO_PKG_VERSION"), "\n")
                .as_bytes(),
        ),
        ["merge", files @ ..] if !files.is_empty() => merged(files),
        ["text", file] => diag::out(read(file).1.text().as_bytes()),
        ["html", files @ ..] if !files.is_empty() => {
            let reports: Vec<_> = files.iter().map(|f| drawn(f)).collect();
            diag::out(html::render_reports(&reports).as_bytes());
        }
        _ => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                USAGE.as_bytes(),
            );
            std::process::exit(2);
        }
    }
}

fn merged(files: &[&str]) {
    let reports: Vec<_> = files.iter().map(|f| read(f)).collect();
    match merge::merge(&reports) {
        Ok((summary, warnings)) => {
            for w in warnings {
                diag::warn(w.as_bytes());
            }
            diag::out(summary.json().as_bytes());
        }
        Err(why) => diag::fatal(why.as_bytes()),
    }
}

/// One report with what only the page draws (thresholds, stage
/// targets, a capacity search: read from the JSON when there).
fn drawn(file: &str) -> html::Report {
    let text = contents(file);
    let line = report_line(&text);
    let summary = merge::parse(line).unwrap_or_else(|e| fatal(file, &e));
    let json = serde_json::from_str(line).unwrap_or_default();
    html::Report {
        name: file.to_string(),
        summary,
        extras: html::Extras::from_json(&json),
    }
}

/// One report, named by its file; any error is fatal and names it.
fn read(file: &str) -> (String, Summary) {
    let text = contents(file);
    let summary =
        merge::parse(report_line(&text)).unwrap_or_else(|e| fatal(file, &e));
    (file.to_string(), summary)
}

/// A file's text (- is stdin); an error is fatal and names the file.
fn contents(file: &str) -> String {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map(|_| s)
            .map_err(|e| e.to_string())
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| smtp_source::error::io_text(&e))
    };
    text.unwrap_or_else(|e| fatal(file, &e))
}

/// The report in `text`: all of it, or in a log (a pod's output, a
/// --report=json run's stdout) the last line that is a report.
fn report_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| l.starts_with("{\"version\":1"))
        .unwrap_or(text)
}

fn fatal(file: &str, why: &str) -> ! {
    diag::fatal(format!("{file}: {why}").as_bytes())
}
