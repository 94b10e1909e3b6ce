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
        // The Job serves /metrics for Prometheus's scrape annotations,
        // and lingers for the last scrape.
        assert_eq!(
            field("report"),
            "json, metrics at 0.0.0.0:9464, linger 45s"
        );
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

/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.33.0";

fn manifest_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn kubernetes_validate(files: &[&Path]) -> crate::support::Outcome {
    let mut cmd = sh("exec python3 -m kubernetes_validate \"$@\"")
        .arg("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES_VERSION]);
    for f in files {
        cmd = cmd.arg(*f);
    }
    cmd.timeout(Duration::from_secs(60)).run()
}

/// Every resource in deploy/kubernetes passes kubernetes-validate's
/// strict schema check (no unknown fields) for the pinned Kubernetes
/// version; a field misspelt on purpose does not, so the check is real.
#[test]
fn kubernetes_manifest_passes_the_schema() {
    let test = "deploy::kubernetes_manifest_passes_the_schema";
    let probe = sh("python3 -m kubernetes_validate --version")
        .timeout(Duration::from_secs(30))
        .run();
    if probe.status != Some(0) {
        skip(
            test,
            "kubernetes-validate is not installed (pip install \
kubernetes-validate; .ci/run installs it)",
        );
        return;
    }
    let job = repo("deploy/kubernetes/smtp-source-job.yaml");
    let out = kubernetes_validate(&[&job]);
    out.assert_status(0);
    let text = out.stdout_text() + &out.stderr_text();
    let minor = KUBERNETES_VERSION.rsplit_once('.').unwrap().0;
    for resource in ["configmap/smtp-source-run", "job/smtp-source"] {
        let want =
            format!("passed for resource {resource} against version {minor}");
        assert!(text.contains(&want), "{want:?} not in:\n{text}");
    }
    assert!(!text.contains("WARN"), "{text}");
    // Prometheus finds the pods by their annotations, at the port the
    // pods' --metrics-listen serves.
    let m = manifest(&manifest_text(&job));
    assert!(
        m.data["METRICS"].starts_with("--metrics-listen=9464 "),
        "{:?}",
        m.data
    );
    let text = manifest_text(&job);
    for line in [
        "prometheus.io/scrape: \"true\"",
        "prometheus.io/port: \"9464\"",
        "prometheus.io/path: /metrics",
        "containerPort: 9464",
    ] {
        assert!(text.contains(line), "{line}");
    }
    assert!(m.script.contains("$METRICS"), "{}", m.script);
    let dir = TempDir::new("deploy-k8s-schema");
    let bad = dir.path().join("bad.yaml");
    let manifest = std::fs::read_to_string(&job).unwrap();
    std::fs::write(&bad, manifest.replace("backoffLimit:", "backofLimit:"))
        .unwrap();
    let out = kubernetes_validate(&[&bad]);
    assert_ne!(out.status, Some(0), "{}", out.render());
}

/// deploy/kubernetes/collect-reports.sh against a stand-in for the
/// Indexed Job: the manifest's script runs once per pod, each its own
/// process with its own JOB_COMPLETION_INDEX, all at once against the
/// sink; a stand-in kubectl lists the "pods" and serves their output as
/// their logs. The merged report counts what the sink received; a pod
/// gone missing is named and fails the collection.
#[test]
fn kubernetes_reports_collected_from_an_indexed_job_stand_in() {
    let test =
        "deploy::kubernetes_reports_collected_from_an_indexed_job_stand_in";
    let Some(sink) = Sink::start(test, &["--messages", "40"]) else {
        return;
    };
    let text = std::fs::read_to_string(repo(
        "deploy/kubernetes/smtp-source-job.yaml",
    ))
    .unwrap();
    let m = manifest(&text);
    let shards: u32 = m.data["SHARDS"].parse().unwrap();
    let dir = TempDir::new("deploy-k8s-collect");
    let bin_dir = dir.path().join("bin");
    let pods = dir.path().join("pods");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&pods).unwrap();
    std::os::unix::fs::symlink(
        bin("smtp-source"),
        bin_dir.join("smtp-source"),
    )
    .unwrap();
    let kubectl = bin_dir.join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\n\
             echo \"$*\" >>'{calls}'\n\
             case \"$1 $2 $3 $4 $5 $6\" in\n\
             'get pods -l job-name=smtp-source -o name')\n\
             \tfor f in '{pods}'/*.log; do n=${{f##*/}}; echo \"pod/${{n%.log}}\"; done ;;\n\
             'logs pod/'*) cat '{pods}'/\"${{2#pod/}}.log\" ;;\n\
             *) echo \"kubectl stand-in: $*\" >&2; exit 1 ;;\n\
             esac\n",
            calls = dir.path().join("calls").display(),
            pods = pods.display(),
        ),
    )
    .unwrap();
    sh(&format!("chmod +x '{}'", kubectl.display()))
        .timeout(Duration::from_secs(5))
        .run()
        .assert_status(0);
    let path = format!("{}:/usr/bin:/bin", bin_dir.display());
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let logs: Vec<(u32, crate::support::Outcome)> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..shards)
            .map(|index| {
                let (m, path, endpoint) = (&m, &path, &sink.endpoint);
                s.spawn(move || {
                    let mut cmd = sh(&m.script)
                        .timeout(Duration::from_secs(20))
                        .env("JOB_COMPLETION_INDEX", index.to_string());
                    for (k, v) in &m.data {
                        cmd = cmd.env(k.as_str(), v.as_str());
                    }
                    let out = cmd
                        .env("PATH", path.as_str())
                        .env("START_AT", start.to_string())
                        .env("OPTIONS", "-s 2 -m 40 -d")
                        // Pods have a network namespace each; these
                        // processes share one, so one port 9464.
                        .env("METRICS", "")
                        .env("TARGET", endpoint.as_str())
                        .run();
                    (index, out)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let summary = sink.finish();
    for (index, out) in &logs {
        out.assert_status(0).assert_stderr("");
        // kubectl logs: the container's stdout and stderr, as one log.
        std::fs::write(
            pods.join(format!("smtp-source-{index}-p{index}x.log")),
            out.stdout.as_slice(),
        )
        .unwrap();
    }
    assert!(
        summary.lines().any(|l| l.starts_with("sink received: ")
            && l.contains(" messages=40 ")),
        "{summary}"
    );
    let collect = |out_dir: &Path| {
        program(repo("deploy/kubernetes/collect-reports.sh"), "collect")
            .cmd()
            .argv0(None)
            .env("PATH", path.as_str())
            .env("SMTP_REPORT", bin("smtp-report"))
            .arg(out_dir)
            .timeout(Duration::from_secs(20))
            .run()
    };
    let out_dir = dir.path().join("out");
    let out = collect(&out_dir);
    out.assert_status(0).assert_stderr("");
    assert!(
        out.stdout_text()
            .contains("messages:     40 attempted, 40 accepted"),
        "{}",
        out.stdout_text()
    );
    let merged: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("merged.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(merged["messages"]["accepted"], 40);
    let mut sum = 0;
    for k in 1..=shards {
        let s: Value = serde_json::from_str(
            &std::fs::read_to_string(out_dir.join(format!("shard-{k}.json")))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(s["shard"]["index"], k);
        sum += s["messages"]["accepted"].as_u64().unwrap();
    }
    assert_eq!(sum, 40);
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    assert!(
        calls.starts_with("get pods -l job-name=smtp-source -o name\n"),
        "{calls}"
    );
    assert_eq!(calls.lines().count(), 1 + shards as usize, "{calls}");

    // Shard 3's pod is gone: the others are merged, the gap is named.
    std::fs::remove_file(pods.join("smtp-source-2-p2x.log")).unwrap();
    let out = collect(&dir.path().join("out2"));
    out.assert_status(1).assert_stderr(&format!(
        "collect-reports.sh: no report from shard(s) 3 of {shards}\n\
         smtp-report: warning: 3 of {shards} shards; missing: 3\n"
    ));
}
