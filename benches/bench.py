#!/usr/bin/env python3
"""bench.py: our smtp-source side by side with Postfix 3.7.11's (`make bench`).

Both clients are run against Debian's smtp-sink (from `make reference`), on
127.0.0.1 (a port the kernel picks) or on a UNIX-domain socket, alternately,
for BENCH_ROUNDS rounds each. Every run gets a fresh sink, so that no run
inherits another run's sockets. The harness reports, per workload:

  * the median wall time and messages/s, and ours/reference throughput;
  * client CPU (user+sys, from wait4(2)) per message;
  * system calls per message, from `strace -f -c` on a run with a tenth of
    the messages (same options);
  * the peak RSS (ru_maxrss) of the client;

prints a markdown table and writes it, with a description of the machine,
to BENCHMARKS.md. Python 3 standard library only.

Environment (all optional):
  BENCH_ROUNDS     rounds per client and workload (default 3)
  BENCH_SCALE      factor applied to every -m (default 1.0); the quick run
                   BENCH_SCALE=0.1 BENCH_ROUNDS=1 takes well under a minute
  BENCH_TIMEOUT    seconds allowed per client run (default 120)
  BENCH_OUTPUT     where to write the report (default BENCHMARKS.md;
                   "-" writes nothing)
  BENCH_ONLY       comma-separated workload numbers (1-based) to run;
                   "big" is the -s 10000 run, "mix" the --size-mix row,
                   e.g. BENCH_ONLY=1,3,big
  BENCH_NO_STRACE  set to 1 to skip the strace runs
  REFERENCE        the unpacked Debian postfix (default target/reference)
  SMTP_SOURCE      our client (default target/release/smtp-source)
"""

import os
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Workloads: (label, options, messages, transport).
# "unix" workloads use LMTP on a UNIX-domain socket (the sink gets -L).
WORKLOADS = [
    ("-s 1 -m 5000", ["-s", "1"], 5000, "inet"),
    ("-s 10 -m 20000", ["-s", "10"], 20000, "inet"),
    ("-d -s 1 -m 20000", ["-d", "-s", "1"], 20000, "inet"),
    ("-d -s 10 -m 50000", ["-d", "-s", "10"], 50000, "inet"),
    ("-d -s 10 -m 20000 -l 10000", ["-d", "-s", "10", "-l", "10000"], 20000, "inet"),
    ("-s 1000 -m 20000", ["-s", "1000"], 20000, "inet"),
    ("-L -d -s 10 -m 50000 unix:", ["-L", "-d", "-s", "10"], 50000, "unix"),
    # Ours pipelined against the reference's lock-step.
    ("--pipelining -d -s 1 -m 20000", ["-d", "-s", "1"], 20000, "inet"),
    ("--pipelining -d -s 10 -m 50000", ["-d", "-s", "10"], 50000, "inet"),
]
# Options only our client gets, per workload (the reference has none).
OURS_EXTRA = {
    "--pipelining -d -s 1 -m 20000": ["--pipelining"],
    "--pipelining -d -s 10 -m 50000": ["--pipelining"],
}
# Per-workload throughput targets, where one differs from the default.
TARGET_THROUGHPUT_FOR = {"--pipelining -d -s 1 -m 20000": 3.0}
# The many-sessions check (not timed against a target).
BIG = ("-s 10000 -m 20000", ["-s", "10000"], 20000, "inet")
RSS_WORKLOAD = "-s 1000 -m 20000"
# The --size-mix row (BENCH_ONLY=mix): ours draws each message's payload
# size from the mix (fixed seed), the reference sends -l at the mix's
# mean size; compared in MB/s of payload (message counts alone would
# favour whichever client drew the smaller messages).
SIZE_MIX = [(2048, 60), (20480, 30), (204800, 9), (2097152, 1)]
SIZE_MIX_MEAN = sum(s * w for s, w in SIZE_MIX) // sum(w for _, w in SIZE_MIX)
MIX = ("--size-mix -d -s 10 -m 2000", ["-d", "-s", "10"], 2000, "inet")

# The default targets.
TARGET_THROUGHPUT = 1.25  # ours msgs/s >= 1.25 x the reference's
TARGET_SYSCALLS = 0.5  # ours syscalls/msg <= 0.5 x the reference's
TARGET_RSS = 0.2  # ours peak RSS at -s 1000 <= 0.2 x the reference's

WANT_NOFILE = 100000


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def env_float(name, default):
    v = os.environ.get(name, "")
    return float(v) if v.strip() else default


ROUNDS = max(1, env_int("BENCH_ROUNDS", 3))
SCALE = env_float("BENCH_SCALE", 1.0)
RUN_TIMEOUT = env_float("BENCH_TIMEOUT", 120.0)
OUTPUT = os.environ.get("BENCH_OUTPUT", "BENCHMARKS.md")
ONLY = [x.strip() for x in os.environ.get("BENCH_ONLY", "").split(",") if x.strip()]
NO_STRACE = os.environ.get("BENCH_NO_STRACE", "") not in ("", "0")
REFERENCE = os.path.join(ROOT, os.environ.get("REFERENCE", "target/reference"))
OURS = os.path.join(ROOT, os.environ.get("SMTP_SOURCE", "target/release/smtp-source"))
REF = os.path.join(REFERENCE, "usr/sbin/smtp-source")
SINK = os.path.join(REFERENCE, "usr/sbin/smtp-sink")
REF_LIBS = os.path.join(REFERENCE, "usr/lib/postfix")

NOTES = []  # odd things seen during the run, for the report


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def note(msg):
    log("note:", msg)
    if msg not in NOTES:
        NOTES.append(msg)


def die(msg):
    log("bench: " + msg)
    sys.exit(1)


def scaled(m):
    return max(1, int(round(m * SCALE)))


# ---------------------------------------------------------------------------
# Environment


def raise_nofile():
    """Raise RLIMIT_NOFILE for us and (by inheritance) sink and clients."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(WANT_NOFILE, soft)
    for lim in ((want, max(want, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, lim)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


TIME_BIN = None


def ensure_time():
    """GNU time, to read the client's own ru_maxrss (see spawn_wait)."""
    global TIME_BIN
    path = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    if not path and os.geteuid() == 0 and shutil.which("apt-get"):
        log("bench: GNU time is missing; apt-get install -y time")
        subprocess.run(["timeout", "300", "apt-get", "install", "-y", "time"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        path = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    if path:
        probe = subprocess.run([path, "-f", "%M", "true"], capture_output=True,
                               text=True, timeout=10)
        if probe.returncode == 0 and probe.stderr.strip().isdigit():
            TIME_BIN = path
            return int(probe.stderr.strip())
    note("GNU time is unavailable: peak RSS is wait4's ru_maxrss, which "
         "includes the harness's own RSS at fork (too high for small clients)")
    return None


def ensure_strace():
    if NO_STRACE:
        return None
    path = shutil.which("strace")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("bench: strace is missing; apt-get install -y strace")
        try:
            subprocess.run(
                ["timeout", "300", "apt-get", "install", "-y", "strace"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        except OSError:
            pass
        path = shutil.which("strace")
    if not path:
        note("strace is unavailable: system calls per message are n/a")
    return path


def read_first(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine():
    mem = read_first("/proc/meminfo", "MemTotal")
    try:
        mem = "%.1f GiB" % (int(mem.split()[0]) / 1048576.0)
    except (ValueError, IndexError):
        pass
    u = os.uname()
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ports = "-".join(f.read().split())
    except OSError:
        ports = "unknown"
    return {
        "nproc": str(os.cpu_count()),
        "usable CPUs": str(len(os.sched_getaffinity(0))),
        "CPU": read_first("/proc/cpuinfo", "model name"),
        "kernel": "%s %s %s" % (u.sysname, u.release, u.machine),
        "memory": mem,
        "somaxconn": str(read_int("/proc/sys/net/core/somaxconn")),
        "ephemeral ports": ports,
    }


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def git_rev():
    try:
        out = subprocess.run(
            ["git", "-C", ROOT, "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return out or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def tcp_states():
    """Counts of TIME_WAIT (06) and all sockets in /proc/net/tcp{,6}."""
    tw = total = 0
    for p in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(p) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    total += 1
                    if len(fields) > 3 and fields[3] == "06":
                        tw += 1
        except OSError:
            pass
    return tw, total


# ---------------------------------------------------------------------------
# The sink


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class Sink:
    """Debian's smtp-sink, bounded by timeout(1), fresh for each run."""

    def __init__(self, workdir, transport, lmtp, sessions, nofile, lifetime):
        self.workdir = workdir
        self.transport = transport
        self.proc = None
        # The sink's -m is the most simultaneous connections it will
        # handle; the rest would stay queued in the kernel. With -d, a
        # session that the client has closed may still be open in the sink
        # when its successor arrives, hence the margin.
        self.max_conn = max(1000, 2 * sessions + 100)
        if self.max_conn > nofile - 100:
            self.max_conn = nofile - 100
            if self.max_conn <= sessions:
                note("RLIMIT_NOFILE %d leaves the sink -m %d <= -s %d: "
                     "excess sessions queue in the kernel" % (nofile, self.max_conn, sessions))
        self.backlog = 65535  # the kernel caps it at net.core.somaxconn
        for attempt in range(5):
            if transport == "unix":
                self.path = os.path.join(workdir, "sink.%d.sock" % attempt)
                self.addr = "unix:" + self.path
                sink_addr = self.addr
            else:
                self.port = free_port()
                self.addr = "127.0.0.1:%d" % self.port
                sink_addr = "inet:" + self.addr
            self.out_path = os.path.join(workdir, "sink.out")
            self.err_path = os.path.join(workdir, "sink.err")
            cmd = ["timeout", "-k", "5", str(int(lifetime)), SINK, "-c", "-u", "nobody"]
            if os.geteuid() != 0:
                cmd = cmd[:-2]
            if lmtp:
                cmd.append("-L")
            cmd += ["-m", str(self.max_conn), sink_addr, str(self.backlog)]
            self.cmd = cmd
            env = dict(os.environ, LD_LIBRARY_PATH=REF_LIBS)
            with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=err, env=env)
            if self.wait_ready():
                return
            self.stop()
            log("bench: sink did not start on %s (attempt %d): %s"
                % (self.addr, attempt + 1, self.stderr().strip()[-300:]))
        die("could not start smtp-sink: " + " ".join(self.cmd))

    def wait_ready(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self.transport == "unix":
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    target = self.path
                else:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    target = ("127.0.0.1", self.port)
                s.settimeout(2)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                try:
                    s.connect(target)
                    greeting = s.recv(512)
                finally:
                    s.close()
                if greeting.startswith(b"220"):
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def counters(self):
        """The last "sess=N quit=N mesg=N" that smtp-sink -c printed."""
        try:
            with open(self.out_path, "rb") as f:
                data = f.read()
        except OSError:
            return {}
        recs = [r for r in data.replace(b"\n", b"\r").split(b"\r") if b"mesg=" in r]
        if not recs:
            return {}
        out = {}
        for kv in recs[-1].decode("ascii", "replace").split():
            k, _, v = kv.partition("=")
            try:
                out[k] = int(v)
            except ValueError:
                pass
        return out

    def wait_messages(self, n, wait=2.0):
        deadline = time.monotonic() + wait
        while True:
            got = self.counters().get("mesg", 0)
            if got >= n or time.monotonic() >= deadline:
                return got
            time.sleep(0.02)

    def stderr(self):
        try:
            with open(self.err_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # timeout(1) passes SIGTERM on to smtp-sink.
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.transport == "unix":
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.proc = None


LIVE_SINKS = []


def kill_sinks(*_):
    for s in list(LIVE_SINKS):
        try:
            s.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


# ---------------------------------------------------------------------------
# Running a client


class Result:
    def __init__(self, ok, wall, cpu, maxrss_kib, status, err, delivered):
        self.ok = ok
        self.wall = wall
        self.cpu = cpu
        self.maxrss = maxrss_kib
        self.status = status
        self.err = err
        self.delivered = delivered


def spawn_wait(argv, env, errfile, timeout, rssfile=None):
    """posix_spawn argv in its own process group and wait4 it.

    Returns (wall seconds, rusage, wait status, timed out). With rssfile,
    argv runs under GNU time, which writes the client's own ru_maxrss there:
    a child's ru_maxrss includes what its parent's image held at fork, so
    the client must not be forked from this (large) Python process. The
    rusage from wait4 covers time(1) and the client; time(1) itself uses
    about a millisecond of CPU.
    """
    if rssfile is not None and TIME_BIN:
        argv = [TIME_BIN, "-f", "%M", "-o", rssfile] + argv
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, errfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setpgroup=0)
    timed_out = []

    def kill():
        timed_out.append(True)
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        while True:
            try:
                _, status, ru = os.wait4(pid, 0)
                break
            except InterruptedError:
                continue
    except BaseException:
        # Interrupted (^C, SIGTERM): take the client down with us.
        kill()
        raise
    finally:
        timer.cancel()
    wall = time.perf_counter() - t0
    if timed_out:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    return wall, ru, status, bool(timed_out)


def read_maxrss(rssfile, fallback):
    """The client's ru_maxrss as GNU time wrote it, else wait4's."""
    if TIME_BIN:
        try:
            with open(rssfile) as f:
                for line in f.read().split("\n")[::-1]:
                    if line.strip().isdigit():
                        return int(line.strip())
        except OSError:
            pass
    return fallback


def client_env(which):
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    if which == "ref":
        env["LD_LIBRARY_PATH"] = REF_LIBS
    return env


def client_argv(which, opts, messages, addr, label=""):
    if which == "ref":
        return [REF] + opts + ["-m", str(messages), addr]
    return [OURS] + OURS_EXTRA.get(label, []) + opts + ["-m", str(messages), addr]


def run_client(which, wl, messages, workdir, nofile, strace=None):
    label, opts, _, transport = wl
    sessions = int(opts[opts.index("-s") + 1])
    lmtp = "-L" in opts
    sink = Sink(workdir, transport, lmtp, sessions, nofile, RUN_TIMEOUT + 60)
    LIVE_SINKS.append(sink)
    try:
        argv = client_argv(which, opts, messages, sink.addr, label)
        errfile = os.path.join(workdir, "client.err")
        if strace:
            trace_out = os.path.join(workdir, "strace.out")
            argv = [strace, "-f", "-c", "-o", trace_out, "--"] + argv
        rssfile = os.path.join(workdir, "client.rss")
        try:
            os.unlink(rssfile)
        except OSError:
            pass
        wall, ru, status, timed_out = spawn_wait(argv, client_env(which), errfile,
                                                 RUN_TIMEOUT * (4 if strace else 1),
                                                 None if strace else rssfile)
        code = os.waitstatus_to_exitcode(status)
        delivered = sink.wait_messages(messages, wait=0.5 if code == 0 else 0.2)
        with open(errfile, errors="replace") as f:
            err = f.read().strip()
        ok = code == 0 and not timed_out
        if timed_out:
            err = ("timed out after %ds; " % RUN_TIMEOUT) + err
        if ok and delivered != messages:
            note("%s %s: exit 0 but the sink counted %d of %d messages"
                 % (which, label, delivered, messages))
        maxrss = read_maxrss(rssfile, ru.ru_maxrss)
        if code != 0 and TIME_BIN and err.startswith("Command exited with non-zero status"):
            err = err.split("\n", 1)[-1]
        res = Result(ok, wall, ru.ru_utime + ru.ru_stime, maxrss, code, err, delivered)
        if strace:
            res.syscalls = parse_strace(trace_out)
        return res
    finally:
        sink.stop()
        LIVE_SINKS.remove(sink)


def parse_strace(path):
    """Total calls from `strace -c` output, or None."""
    try:
        with open(path) as f:
            for line in f:
                t = line.split()
                if t and t[-1] == "total":
                    nums = t[:-1]
                    # % time, seconds, usecs/call, calls[, errors]
                    if len(nums) >= 4:
                        return int(nums[3])
                    return int(nums[-1])
    except (OSError, ValueError):
        pass
    return None


# ---------------------------------------------------------------------------
# Formatting


def fmt(x, spec="%.3g", na="n/a"):
    if x is None:
        return na
    return spec % x


def fmt_rate(x):
    return "n/a" if x is None else "{:,.0f}".format(x)


def passfail(ok):
    return "n/a" if ok is None else ("**pass**" if ok else "**FAIL**")


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


class Stats:
    def __init__(self, messages, results, trace):
        self.messages = messages
        self.results = results
        good = [r for r in results if r.ok]
        self.failures = len(results) - len(good)
        self.trace = trace
        if good:
            self.wall = statistics.median(r.wall for r in good)
            self.rate = messages / self.wall
            self.cpu_us = statistics.median(r.cpu for r in good) / messages * 1e6
            self.rss = statistics.median(r.maxrss for r in good)
            self.rss_max = max(r.maxrss for r in good)
        else:
            self.wall = self.rate = self.cpu_us = self.rss = self.rss_max = None
        self.syscalls = None
        if trace is not None and trace.ok and getattr(trace, "syscalls", None):
            self.syscalls = trace.syscalls / trace.messages


def runs_cell(st):
    return ", ".join(
        ("%.2f/%.2f/%d" % (r.wall, r.cpu, r.maxrss)) if r.ok else "failed (exit %d)" % r.status
        for r in st.results)


def table(rows):
    head = [
        "workload", "ref wall s", "ours wall s", "ref msg/s", "ours msg/s",
        "ours/ref", "target",
        "ref CPU µs/msg", "ours CPU µs/msg",
        "ref syscalls/msg", "ours syscalls/msg", "ours/ref", "≤0.5×",
        "ref RSS KiB", "ours RSS KiB", "ours/ref", "≤0.2× (-s 1000)",
    ]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for label, m, ref, ours in rows:
        tput = ratio(ours.rate, ref.rate)
        target = TARGET_THROUGHPUT_FOR.get(label, TARGET_THROUGHPUT)
        sysr = ratio(ours.syscalls, ref.syscalls)
        rssr = ratio(ours.rss, ref.rss)
        rss_target = passfail(None if rssr is None else rssr <= TARGET_RSS) \
            if label == RSS_WORKLOAD else "–"
        fails = ""
        if ref.failures or ours.failures:
            fails = " (failed runs: ref %d, ours %d)" % (ref.failures, ours.failures)
        cells = [
            "`%s`%s%s" % (label, "" if m == WL_M[label] else " (m=%d)" % m, fails),
            fmt(ref.wall, "%.3f"), fmt(ours.wall, "%.3f"),
            fmt_rate(ref.rate), fmt_rate(ours.rate),
            fmt(tput, "%.2f"),
            "%s ≥%g×" % (passfail(None if tput is None else tput >= target), target),
            fmt(ref.cpu_us, "%.1f"), fmt(ours.cpu_us, "%.1f"),
            fmt(ref.syscalls, "%.2f"), fmt(ours.syscalls, "%.2f"),
            fmt(sysr, "%.2f"), passfail(None if sysr is None else sysr <= TARGET_SYSCALLS),
            fmt(ref.rss, "%d"), fmt(ours.rss, "%d"), fmt(rssr, "%.2f"), rss_target,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


WL_M = {w[0]: w[2] for w in WORKLOADS + [BIG]}


def mix_payload(report_file):
    """Payload bytes ours sent, from its JSON report's size_classes."""
    import json
    try:
        with open(report_file) as f:
            classes = json.load(f)["size_classes"]
        return sum(c["size"] * c["messages"] for c in classes)
    except (OSError, ValueError, KeyError):
        return None


def run_mix(workdir, nofile):
    """The --size-mix row: BENCH_ROUNDS rounds each; Markdown lines."""
    label, opts, m0, transport = MIX
    m = scaled(m0)
    report = os.path.join(workdir, "mix.json")
    spec = ",".join("%d:%d" % c for c in SIZE_MIX)
    OURS_EXTRA[label] = ["--size-mix=" + spec, "--seed=1", "--report-file=" + report]
    wl = {"ours": MIX, "ref": (label, opts + ["-l", str(SIZE_MIX_MEAN)], m0, transport)}
    rates = {"ref": [], "ours": []}
    for rnd in range(ROUNDS):
        for which in (("ref", "ours") if rnd % 2 == 0 else ("ours", "ref")):
            r = run_client(which, wl[which], m, workdir, nofile)
            payload = m * SIZE_MIX_MEAN if which == "ref" else mix_payload(report)
            mbs = payload / r.wall / 1e6 if r.ok and payload else None
            log("  %-28s %-4s round %d: %s %.3fs payload %s MB/s %s"
                % (label, which, rnd + 1, "ok" if r.ok else "FAILED(%d)" % r.status,
                   r.wall, payload, fmt(mbs, "%.1f")))
            if mbs is not None:
                rates[which].append(mbs)
    med = {k: statistics.median(v) if v else None for k, v in rates.items()}
    return [
        "| workload | ref MB/s (`-l %d`) | ours MB/s (`--size-mix=%s`) | ours/ref |"
        % (SIZE_MIX_MEAN, spec),
        "|---|---:|---:|---:|",
        "| `%s`%s | %s | %s | %s |" % (
            label, "" if m == m0 else " (m=%d)" % m, fmt(med["ref"], "%.1f"),
            fmt(med["ours"], "%.1f"), fmt(ratio(med["ours"], med["ref"]), "%.2f")),
    ]


# ---------------------------------------------------------------------------


def main():
    os.chdir(ROOT)
    for path, what in ((OURS, "our smtp-source (cargo build --release)"),
                       (REF, "the reference smtp-source (make reference)"),
                       (SINK, "smtp-sink (make reference)")):
        if not os.access(path, os.X_OK):
            die("%s is missing: %s" % (what, path))
    if os.geteuid() == 0 and not shutil.which("timeout"):
        die("timeout(1) is missing")
    nofile = raise_nofile()
    strace = ensure_strace()
    rss_floor = ensure_time()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    selected = []
    for i, wl in enumerate(WORKLOADS, 1):
        if not ONLY or str(i) in ONLY:
            selected.append(wl)
    do_big = not ONLY or "big" in ONLY
    do_mix = not ONLY or "mix" in ONLY
    mix_lines = []

    t_start = time.monotonic()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = loadavg()
    tw_max = 0
    rows = []
    workdir = tempfile.mkdtemp(prefix="smtp-bench.")
    os.chmod(workdir, 0o755)
    log("bench: rounds=%d scale=%g nofile=%d strace=%s" % (ROUNDS, SCALE, nofile, strace or "n/a"))
    try:
        for wl in selected:
            label, opts, m0, _ = wl
            m = scaled(m0)
            res = {"ref": [], "ours": []}
            for rnd in range(ROUNDS):
                order = ("ref", "ours") if rnd % 2 == 0 else ("ours", "ref")
                for which in order:
                    tw, _ = tcp_states()
                    tw_max = max(tw_max, tw)
                    r = run_client(which, wl, m, workdir, nofile)
                    res[which].append(r)
                    log("  %-28s %-4s round %d: %s %.3fs cpu %.3fs rss %d KiB sink mesg=%d tw-before=%d%s"
                        % (label, which, rnd + 1, "ok" if r.ok else "FAILED(%d)" % r.status,
                           r.wall, r.cpu, r.maxrss, r.delivered, tw,
                           "" if r.ok else " " + r.err[-200:]))
                    if not r.ok:
                        note("%s `%s` round %d failed (exit %d): %s"
                             % (which, label, rnd + 1, r.status, r.err[-200:]))
            traces = {"ref": None, "ours": None}
            if strace:
                # A tenth of the messages, but at least ten per session
                # (capped at m), so that thread and session setup, paid
                # once per session, does not dominate the per-message
                # figure (-s 1000 -m 20000 sends 20 per session).
                sessions = int(opts[opts.index("-s") + 1])
                mt = max(1, m // 10, min(m, 10 * sessions))
                for which in ("ref", "ours"):
                    r = run_client(which, wl, mt, workdir, nofile, strace=strace)
                    r.messages = mt
                    traces[which] = r
                    log("  %-28s %-4s strace m=%d: %s syscalls=%s (%s/msg)"
                        % (label, which, mt, "ok" if r.ok else "FAILED",
                           r.syscalls, fmt(r.syscalls / mt if r.syscalls else None, "%.2f")))
                    if not r.ok:
                        note("%s `%s` under strace failed: %s" % (which, label, r.err[-200:]))
            rows.append((label, m, Stats(m, res["ref"], traces["ref"]),
                         Stats(m, res["ours"], traces["ours"])))

        big_lines = []
        if do_big:
            label, opts, m0, _ = BIG
            sessions = int(opts[1])
            m = max(scaled(m0), sessions)
            big_lines.append("| client | result | wall s | msg/s | CPU s | peak RSS KiB |")
            big_lines.append("|---|---|---:|---:|---:|---:|")
            for which in ("ours", "ref"):
                r = run_client(which, BIG, m, workdir, nofile)
                log("  %-28s %-4s: %s %.3fs cpu %.3fs rss %d KiB sink mesg=%d %s"
                    % (label, which, "ok" if r.ok else "FAILED(%d)" % r.status,
                       r.wall, r.cpu, r.maxrss, r.delivered, r.err[-200:]))
                result = "ok" if r.ok else "failed (exit %d): %s" % (
                    r.status, r.err.replace("|", "\\|").replace("\n", " ")[-160:])
                big_lines.append("| %s | %s | %.3f | %s | %.3f | %d |" % (
                    "reference" if which == "ref" else "ours", result, r.wall,
                    fmt_rate(m / r.wall) if r.ok else "n/a", r.cpu, r.maxrss))
            big_m = m
        if do_mix:
            mix_lines = run_mix(workdir, nofile)
    finally:
        kill_sinks()
        shutil.rmtree(workdir, ignore_errors=True)

    tw_after, _ = tcp_states()
    load_end = loadavg()
    elapsed = time.monotonic() - t_start
    md = table(rows)
    print(md)
    if do_big:
        print()
        print("\n".join(big_lines))
    if mix_lines:
        print()
        print("\n".join(mix_lines))

    misses = []
    for label, m, ref, ours in rows:
        tput = ratio(ours.rate, ref.rate)
        target = TARGET_THROUGHPUT_FOR.get(label, TARGET_THROUGHPUT)
        if tput is not None and tput < TARGET_THROUGHPUT:
            misses.append("`%s`: throughput %.2f× the reference (target ≥ %.2f×)"
                          % (label, tput, TARGET_THROUGHPUT))
        sysr = ratio(ours.syscalls, ref.syscalls)
        if sysr is not None and sysr > TARGET_SYSCALLS:
            misses.append("`%s`: %.2f syscalls/msg vs the reference's %.2f = %.2f× (target ≤ %.2f×)"
                          % (label, ours.syscalls, ref.syscalls, sysr, TARGET_SYSCALLS))
        if label == RSS_WORKLOAD:
            rssr = ratio(ours.rss, ref.rss)
            if rssr is not None and rssr > TARGET_RSS:
                misses.append("`%s`: peak RSS %d KiB vs the reference's %d KiB = %.2f× (target ≤ %.2f×)"
                              % (label, ours.rss, ref.rss, rssr, TARGET_RSS))
    if misses:
        print("\nMissed targets:")
        for x in misses:
            print("  - " + x)

    if OUTPUT == "-":
        return
    mach = machine()
    out = []
    out.append("# Benchmarks: smtp-source (ours) vs Postfix 3.7.11 smtp-source")
    out.append("")
    out.append("Generated by `make bench` (`python3 benches/bench.py`); see "
               "[benches/README.md](benches/README.md) for the method.")
    out.append("")
    out.append("## Run")
    out.append("")
    out.append("- date: %s (took %.0f s)" % (started, elapsed))
    out.append("- ours: `%s` at %s" % (os.path.relpath(OURS, ROOT), git_rev()))
    out.append("- reference: `%s` (Debian postfix 3.7.11), sink `%s`"
               % (os.path.relpath(REF, ROOT), os.path.relpath(SINK, ROOT)))
    out.append("- BENCH_ROUNDS=%d (each client, alternating order), BENCH_SCALE=%g, "
               "RLIMIT_NOFILE=%d, strace: %s" % (ROUNDS, SCALE, nofile,
                                                  "yes (m/10, at least 10×sessions)" if strace else "n/a"))
    out.append("")
    out.append("## Machine")
    out.append("")
    for k, v in mach.items():
        out.append("- %s: %s" % (k, v))
    out.append("- load average (1, 5, 15 min) at the start: %s; at the end: %s"
               % (load_start, load_end))
    out.append("")
    out.append("## Results")
    out.append("")
    out.append("Medians over the rounds. msg/s = messages ÷ median wall time; "
               "the throughput ratio is ours msg/s ÷ reference msg/s. CPU is the "
               "client's user+sys (wait4). Syscalls per message: `strace -f -c` "
               "total calls ÷ messages, on a separate run with m/10 (at least 10 per session, at most m). RSS is the "
               "client's ru_maxrss (median). Targets: throughput ≥ %.2f×, "
               "syscalls/msg ≤ %.1f×, peak RSS at `-s 1000` ≤ %.1f× the reference."
               % (TARGET_THROUGHPUT, TARGET_SYSCALLS, TARGET_RSS))
    out.append("")
    out.append(md)
    out.append("")
    if do_big:
        out.append("### Many sessions: `%s` (m=%d), one run each" % (BIG[0], big_m))
        out.append("")
        out.extend(big_lines)
        out.append("")
    if mix_lines:
        out.append("### Size mix: payload MB/s against `-l` at the mix's mean size")
        out.append("")
        out.extend(mix_lines)
        out.append("")
    if misses:
        out.append("### Missed targets")
        out.append("")
        out.extend("- " + x for x in misses)
        out.append("")
    out.append("### Every run")
    out.append("")
    out.append("Wall seconds / client CPU seconds / peak RSS KiB, rounds 1, 2, ... "
               "Odd rounds ran the reference first, even rounds ours first.")
    out.append("")
    out.append("| workload | m | reference | ours |")
    out.append("|---|---:|---|---|")
    for label, m, ref, ours in rows:
        out.append("| `%s` | %d | %s | %s |" % (label, m, runs_cell(ref), runs_cell(ours)))
    out.append("")
    out.append("### Notes")
    out.append("")
    out.append("- Each run gets its own fresh smtp-sink (`-c -u nobody -m "
               "max(1000, 2×sessions+100)`, backlog 65535, which the kernel caps at "
               "somaxconn=%s) on a kernel-chosen loopback port or a new UNIX "
               "socket; its message counter is checked after each run."
               % mach["somaxconn"])
    if rss_floor is not None:
        out.append("- Peak RSS is measured by GNU time (`%%M`, the client's own "
                   "ru_maxrss); the floor, `time true`, is %d KiB." % rss_floor)
    out.append("- Most TIME_WAIT sockets seen before a run: %d; after the last: %d."
               % (tw_max, tw_after))
    for n in NOTES:
        out.append("- " + n)
    out.append("")
    # What the figures mean (written by hand, kept across runs).
    analysis = os.path.join(ROOT, "benches", "analysis.md")
    if os.path.exists(analysis):
        with open(analysis) as f:
            out.append(f.read())
    with open(os.path.join(ROOT, OUTPUT), "w") as f:
        f.write("\n".join(out))
    log("bench: wrote %s (%.0f s)" % (OUTPUT, elapsed))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        kill_sinks()
