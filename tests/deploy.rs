//! The recipes in deploy/: GNU parallel over the local ":" login (four
//! shards against the project's sink), and the Kubernetes Indexed Job's
//! command line through `smtp-source --dry-run`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::secure::Sink;
use crate::support::{program, skip, Cmd, TempDir};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn bin(name: &str) -> String {
    match name {
        "smtp-source" => env!("CARGO_BIN_EXE_smtp-source").to_string(),
        _ => env!("CARGO_BIN_EXE_smtp-report").to_string(),
    }
}

fn sh(script: &str) -> Cmd {
    program(PathBuf::from("/bin/sh"), "sh")
        .cmd()
        .argv0(None)
        .args(["-c", script])
}

fn have(tool: &str) -> bool {
    sh(&format!("command -v {tool} >/dev/null"))
        .timeout(Duration::from_secs(5))
        .run()
        .status
        == Some(0)
}

fn hist(v: &Value) -> hdrhistogram::Histogram<u64> {
    smtp_source::report::decode_histogram(v.as_str().unwrap()).unwrap()
}

/// deploy/parallel/run-sharded.sh with four shards on this machine: the
/// merged report's accepted count is what the sink received, and its
/// percentiles are those of all the shards' samples together.
#[test]
fn parallel_recipe_four_shards_against_the_sink() {
    let test = "deploy::parallel_recipe_four_shards_against_the_sink";
    if !have("parallel") {
        skip(
            test,
            "GNU parallel is not installed (apt-get install parallel; \
.ci/run installs it)",
        );
        return;
    }
    let Some(sink) = Sink::start(test, &["--messages", "400"]) else {
        return;
    };
    let dir = TempDir::new("deploy-parallel");
    let logins = dir.path().join("logins");
    std::fs::write(&logins, "# four shards on this machine\n4/:\n").unwrap();
    let out_dir = dir.path().join("out");
    let out = program(repo("deploy/parallel/run-sharded.sh"), "run-sharded")
        .cmd()
        .argv0(None)
        .env("LEAD", "2")
        .env("SMTP_SOURCE", bin("smtp-source"))
        .env("SMTP_REPORT", bin("smtp-report"))
        .arg(&logins)
        .arg(&out_dir)
        .args(["-s", "2", "-m", "400", "-d"])
        .arg(&sink.endpoint)
        .timeout(Duration::from_secs(40))
        .run();
    let summary = sink.finish();
    out.assert_status(0);
    let err = out.stderr_text();
    assert!(
        err.starts_with("run-sharded.sh: 4 shards, starting at "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "no warnings:\n{err}");
    assert!(
        summary.lines().any(|l| l.starts_with("sink received: ")
            && l.contains(" messages=400 ")),
        "{summary}"
    );
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(out_dir.join(name)).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let merged = read("merged.json");
    assert_eq!(merged["messages"]["accepted"], 400);
    assert_eq!(merged["shard"], Value::Null);
    let shards: Vec<Value> =
        (1..=4).map(|k| read(&format!("shard-{k}.json"))).collect();
    for (k, s) in shards.iter().enumerate() {
        assert_eq!(s["shard"]["index"], k + 1);
        assert_eq!(s["messages"]["accepted"], 100);
    }
    let mut all: BTreeMap<String, hdrhistogram::Histogram<u64>> =
        BTreeMap::new();
    for s in &shards {
        for (phase, b64) in s["histograms"].as_object().unwrap() {
            let h = all
                .entry(phase.clone())
                .or_insert_with(smtp_source::report::codec::new_histogram);
            h.add(hist(b64)).unwrap();
        }
    }
    let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
    for (phase, h) in &all {
        let got = &merged["latency_ms"][phase];
        assert_eq!(got["count"].as_u64().unwrap(), h.len(), "{phase}");
        if h.is_empty() {
            continue;
        }
        for (key, q) in
            [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)]
        {
            let want = ms(h.value_at_quantile(q));
            assert_eq!(got[key].as_f64().unwrap(), want, "{phase} {key}");
        }
        assert_eq!(got["max"].as_f64().unwrap(), ms(h.max()), "{phase}");
    }
    let text = std::fs::read_to_string(out_dir.join("merged.txt")).unwrap();
    assert_eq!(out.stdout_text(), text);
    assert!(
        text.contains("messages:     400 attempted, 400 accepted"),
        "{text}"
    );
}

/// The Job's fields: the ConfigMap's data, completions and parallelism,
/// and the container's `sh -c` script. A reader for this one manifest's
/// layout, not for YAML at large.
struct Manifest {
    data: BTreeMap<String, String>,
    completions: u32,
    parallelism: u32,
    mode: String,
    script: String,
}

fn manifest(text: &str) -> Manifest {
    let mut data = BTreeMap::new();
    let (mut completions, mut parallelism, mut mode) = (0, 0, String::new());
    let mut script = String::new();
    let mut in_data = false;
    let mut block: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if let Some(at) = block {
            if indent >= at || t.is_empty() {
                script.push_str(line.get(at..).unwrap_or(""));
                script.push('\n');
                continue;
            }
            block = None;
        }
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if in_data && indent == 2 {
            let (k, v) = t.split_once(": ").unwrap();
            data.insert(k.to_string(), v.trim_matches('"').to_string());
            continue;
        }
        in_data = t == "data:";
        let value = |p: &str| t.strip_prefix(p).map(|v| v.trim().to_string());
        if let Some(v) = value("completions:") {
            completions = v.parse().unwrap();
        } else if let Some(v) = value("parallelism:") {
            parallelism = v.parse().unwrap();
        } else if let Some(v) = value("completionMode:") {
            mode = v;
        } else if t == "- |" {
            block = Some(indent + 2);
        }
    }
    Manifest {
        data,
        completions,
        parallelism,
        mode,
        script,
    }
}

/// Every pod's command line (the manifest's script with the ConfigMap
/// in the environment and its JOB_COMPLETION_INDEX) goes through the
/// real smtp-source with --dry-run: each is a valid command line, and
/// the pods are shards 1..N of one run of -m messages.
#[test]
fn kubernetes_job_command_runs_through_the_parser() {
    let text = std::fs::read_to_string(repo(
        "deploy/kubernetes/smtp-source-job.yaml",
    ))
    .unwrap();
    let m = manifest(&text);
    assert_eq!(m.mode, "Indexed");
    let shards: u32 = m.data["SHARDS"].parse().unwrap();
    assert_eq!((m.completions, m.parallelism), (shards, shards));
    assert!(m.script.contains("JOB_COMPLETION_INDEX"), "{}", m.script);
    let dir = TempDir::new("deploy-k8s");
    let wrapper = dir.path().join("smtp-source");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' --dry-run \"$@\"\n",
            bin("smtp-source")
        ),
    )
    .unwrap();
    sh(&format!("chmod +x '{}'", wrapper.display()))
        .timeout(Duration::from_secs(5))
        .run()
        .assert_status(0);
    let path = format!("{}:/usr/bin:/bin", dir.path().display());
    let mut total = 0;
    for index in 0..shards {
        let mut cmd = sh(&m.script)
            .env("PATH", path.as_str())
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .timeout(Duration::from_secs(10));
        for (k, v) in &m.data {
            cmd = cmd.env(k.as_str(), v.as_str());
        }
        // The cluster's service name does not resolve here.
        let out = cmd.env("TARGET", "127.0.0.1:25").run();
        out.assert_status(0).assert_stderr("");
        let stdout = out.stdout_text();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.first(), Some(&"--- smtp-source report begin"));
        assert_eq!(lines.last(), Some(&"--- smtp-source report end"));
        assert_eq!(lines[1], "smtp-source plan", "{stdout}");
        let field = |name: &str| -> String {
            let prefix = format!("{name}:");
            let l = lines.iter().find(|l| l.starts_with(&prefix)).unwrap();
            l[prefix.len()..].trim().to_string()
        };
        let k = index + 1;
        assert!(field("shard").starts_with(&format!("{k} of {shards} (")));
        assert_eq!(field("start"), "2026-12-05T10:00:00.000Z");
        assert_eq!(field("report"), "json");
        assert_eq!(field("rate"), "500 messages/s (poisson)");
        let messages = field("messages");
        let share: u64 = messages.split(' ').next().unwrap().parse().unwrap();
        assert!(
            messages.ends_with(" of 200000 in the whole run"),
            "{messages}"
        );
        total += share;
    }
    assert_eq!(total, 200_000);
}
