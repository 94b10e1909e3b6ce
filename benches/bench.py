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

A separate TLS section runs our client with --tls (STARTTLS) and
--tls-wrapper (SMTPS) against the project's own sink
(target/release/examples/sink, `cargo build --release --example sink`),
next to `openssl s_time -new` on an SMTPS sink (the per-core reference
point), Debian's postal on a STARTTLS sink and swaks (one message per
process); it reports messages/s,
handshakes/s, client CPU per handshake and full handshakes per client CPU
second, and system calls per handshake. openssl and postal are installed
(and swaks) with apt-get when missing (as root); a row whose tool is missing is
skipped with a note.

Environment (all optional):
  BENCH_ROUNDS     rounds per client and workload (default 3)
  BENCH_SCALE      factor applied to every -m (default 1.0); the quick run
                   BENCH_SCALE=0.1 BENCH_ROUNDS=1 takes well under a minute
  BENCH_TIMEOUT    seconds allowed per client run (default 120)
  BENCH_OUTPUT     where to write the report (default BENCHMARKS.md;
                   "-" writes nothing)
  BENCH_ONLY       comma-separated workload numbers (1-based) to run;
                   "big" is the -s 30000 run, "tls" the TLS section, "mix"
                   the --size-mix row, "metrics" the live-metrics row
                   (on against off), e.g. BENCH_ONLY=1,3,big or
                   BENCH_ONLY=tls. A section that is not run is kept as it
                   was in the existing report.
  BENCH_TLS_SECONDS     -time of each openssl s_time run (default 5)
  BENCH_POSTAL_SECONDS  how long postal runs (default 8)
  BENCH_SINK       our sink (default target/release/examples/sink)
  BENCH_NO_STRACE  set to 1 to skip the strace runs
  REFERENCE        the unpacked Debian postfix (default target/reference)
  SMTP_SOURCE      our client (default target/release/smtp-source)
"""

import json
import os
import re
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
    ("-s 10000 -m 20000", ["-s", "10000"], 20000, "inet"),
    ("-d -s 10000 -m 20000", ["-d", "-s", "10000"], 20000, "inet"),
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
# The pipelined rows must meet theirs in every round, not only the median.
TARGET_THROUGHPUT_FOR = {
    "--pipelining -d -s 1 -m 20000": 4.0,
    "--pipelining -d -s 10 -m 50000": 3.0,
}
STEADY = {"--pipelining -d -s 1 -m 20000", "--pipelining -d -s 10 -m 50000"}
# The many-sessions check: one run each, once (not timed against a
# target): the file limit is raised for it.
BIG = ("-s 30000 -m 30000", ["-s", "30000"], 30000, "inet")
# The many-sessions run as it was made (it may be capped by the file
# limit).
BIG_RUN = [BIG[0]]
# Peak RSS targets (ours / reference), per workload.
TARGET_RSS_FOR = {
    "-s 1000 -m 20000": 0.2,
    "-s 10000 -m 20000": 1.0,
    "-d -s 10000 -m 20000": 1.0,
}
# Client CPU targets (ours / reference), per workload.
TARGET_CPU_FOR = {"-s 10000 -m 20000": 1.0, "-d -s 10000 -m 20000": 1.0}
# The --size-mix row (BENCH_ONLY=mix): ours draws each message's payload
# size from the mix (fixed seed), the reference sends -l at the mix's
# mean size; compared in MB/s of payload (message counts alone would
# favour whichever client drew the smaller messages).
SIZE_MIX = [(2048, 60), (20480, 30), (204800, 9), (2097152, 1)]
SIZE_MIX_MEAN = sum(s * w for s, w in SIZE_MIX) // sum(w for _, w in SIZE_MIX)
MIX = ("--size-mix -d -s 10 -m 2000", ["-d", "-s", "10"], 2000, "inet")

# The default targets.
TARGET_THROUGHPUT = 1.0  # never slower than the reference
TARGET_SYSCALLS = 0.5  # ours syscalls/msg <= 0.5 x the reference's

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


def read_text(path):
    """A file's text, or "" if it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


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
        return read_text(self.err_path)

    def cpu(self):
        """smtp-sink's user+sys CPU seconds so far (the child of
        timeout(1)), or None."""
        if self.proc is None:
            return None
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                kids = f.read().split()
            total = 0.0
            for kid in kids:
                with open("/proc/%s/stat" % kid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                # utime and stime are fields 14 and 15 (1-based; the
                # split starts at field 3).
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            return total if kids else None
        except (OSError, ValueError, IndexError):
            return None

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
        # The sink's CPU seconds during the run (None if unknown).
        self.sink_cpu = None


def spawn_wait(argv, env, errfile, timeout, rssfile=None, outfile=None):
    """posix_spawn argv in its own process group and wait4 it.

    Returns (wall seconds, rusage, wait status, timed out). With rssfile,
    argv runs under GNU time, which writes the client's own ru_maxrss there:
    a child's ru_maxrss includes what its parent's image held at fork, so
    the client must not be forked from this (large) Python process. The
    rusage from wait4 covers time(1) and the client; time(1) itself uses
    about a millisecond of CPU. With outfile, the child's stdout goes
    there instead of /dev/null.
    """
    if rssfile is not None and TIME_BIN:
        argv = [TIME_BIN, "-f", "%M", "-o", rssfile] + argv
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, outfile or "/dev/null",
         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
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
        sink_before = sink.cpu()
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
        sink_after = sink.cpu()
        if sink_before is not None and sink_after is not None:
            res.sink_cpu = sink_after - sink_before
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
            uses = [r.sink_cpu / r.wall * 100 for r in good
                    if r.sink_cpu is not None and r.wall > 0]
            self.sink_use = statistics.median(uses) if uses else None
        else:
            self.wall = self.rate = self.cpu_us = self.rss = self.rss_max = None
            self.sink_use = None
        self.syscalls = None
        if trace is not None and trace.ok and getattr(trace, "syscalls", None):
            self.syscalls = trace.syscalls / trace.messages


def worst_round(ref, ours):
    """The lowest ours/reference throughput over rounds (round i of each)."""
    pairs = [(r.wall, o.wall) for r, o in zip(ref.results, ours.results)
             if r.ok and o.ok and o.wall > 0]
    if not pairs:
        return None
    return min(rw / ow for rw, ow in pairs)


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
        "ref RSS KiB", "ours RSS KiB", "ours/ref", "RSS target",
        "CPU ours/ref", "worst round ours/ref", "sink core use ref / ours",
    ]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for label, m, ref, ours in rows:
        tput = ratio(ours.rate, ref.rate)
        target = TARGET_THROUGHPUT_FOR.get(label, TARGET_THROUGHPUT)
        sysr = ratio(ours.syscalls, ref.syscalls)
        rssr = ratio(ours.rss, ref.rss)
        rss_want = TARGET_RSS_FOR.get(label)
        rss_target = "–" if rss_want is None else "%s ≤%g×" % (
            passfail(None if rssr is None else rssr <= rss_want), rss_want)
        cpur = ratio(ours.cpu_us, ref.cpu_us)
        cpu_want = TARGET_CPU_FOR.get(label)
        cpu_cell = fmt(cpur, "%.2f") + ("" if cpu_want is None else " %s ≤%g×" % (
            passfail(None if cpur is None else cpur <= cpu_want), cpu_want))
        worst = worst_round(ref, ours)
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
            cpu_cell, fmt(worst, "%.2f"),
            "%s / %s" % (fmt(ref.sink_use, "%.0f%%"), fmt(ours.sink_use, "%.0f%%")),
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


# The live-metrics row (BENCH_ONLY=metrics): ours alone, the same workload
# three ways: plain (nothing measured: the drop-in path), --report-file
# (measured, no endpoint), and --metrics-listen while a scraper asks for
# /metrics ten times a second (far more often than any Prometheus).
METRICS_WL = ("-d -s 10 -m 50000", ["-d", "-s", "10"], 50000, "inet")
METRICS_SCRAPE_EVERY = 0.1


class Scraper(threading.Thread):
    """GET /metrics every METRICS_SCRAPE_EVERY s until stopped; counts
    answers and keeps the slowest."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.ok, self.slowest = port, 0, 0.0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.wait(METRICS_SCRAPE_EVERY):
            t = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as c:
                    c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                    data = b""
                    while True:
                        chunk = c.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                if data.startswith(b"HTTP/1.1 200"):
                    self.ok += 1
                    self.slowest = max(self.slowest, time.monotonic() - t)
            except OSError:
                pass


def run_metrics(workdir, nofile):
    """Metrics on against off: BENCH_ROUNDS rounds of each; Markdown lines."""
    label0, opts, m0, transport = METRICS_WL
    m = scaled(m0)
    report = os.path.join(workdir, "metrics.json")
    variants = [("off", []), ("--report-file", ["--report-file=" + report]),
                ("--metrics-listen, scraped at 10 Hz", None)]
    walls = {v[0]: [] for v in variants}
    cpus = {v[0]: [] for v in variants}
    scrapes = []
    for rnd in range(ROUNDS):
        order = variants if rnd % 2 == 0 else variants[::-1]
        for name, extra in order:
            label = "%s [%s]" % (label0, name)
            scraper = None
            if extra is None:
                port = free_port()
                extra = ["--metrics-listen=127.0.0.1:%d" % port]
                scraper = Scraper(port)
                scraper.start()
            OURS_EXTRA[label] = extra
            r = run_client("ours", (label, opts, m0, transport), m, workdir, nofile)
            if scraper:
                scraper.halt.set()
                scraper.join()
                scrapes.append((scraper.ok, scraper.slowest))
            log("  %-50s round %d: %s %.3fs cpu %.3fs%s"
                % (label, rnd + 1, "ok" if r.ok else "FAILED(%d)" % r.status, r.wall, r.cpu,
                   " scrapes %d, slowest %.1f ms" % (scraper.ok, scraper.slowest * 1e3)
                   if scraper else ""))
            if r.ok:
                walls[name].append(r.wall)
                cpus[name].append(r.cpu)
    off = statistics.median(walls["off"]) if walls["off"] else None
    lines = [
        "| `%s`%s | median wall s | msg/s | vs off | client CPU µs/msg |"
        % (label0, "" if m == m0 else " (m=%d)" % m),
        "|---|---:|---:|---:|---:|",
    ]
    for name, _ in variants:
        w = statistics.median(walls[name]) if walls[name] else None
        c = statistics.median(cpus[name]) if cpus[name] else None
        lines.append("| %s | %s | %s | %s | %s |" % (
            name, fmt(w, "%.3f"), fmt_rate(m / w) if w else "n/a",
            fmt(ratio(off, w), "%.2f"), fmt(c * 1e6 / m if c else None, "%.1f")))
    if scrapes:
        lines.append("")
        lines.append("Scrapes answered per run: %s; slowest answer %.1f ms."
                     % (", ".join(str(n) for n, _ in scrapes),
                        max(s for _, s in scrapes) * 1e3))
    return lines


# ---------------------------------------------------------------------------
# TLS rows: our client against the project's own sink (examples/sink.rs)
# with STARTTLS or SMTPS, next to `openssl s_time` (the crypto-bound
# reference point: one process, handshakes only) and Debian's postal.

TLS_SINK = os.path.join(ROOT, os.environ.get("BENCH_SINK", "target/release/examples/sink"))
TLS_STIME_SECONDS = max(1, env_int("BENCH_TLS_SECONDS", 5))
TLS_POSTAL_SECONDS = max(1, env_int("BENCH_POSTAL_SECONDS", 8))
TLS_STRACE_M = 200  # messages in the strace runs, over one session
# Full handshakes per client CPU second: ours must be at least this
# fraction of s_time's ("within 1.5x").
TLS_TARGET_PER_CORE = 1 / 1.5

# (label, client options, messages, sink flag). -m is added to the label.
TLS_ROWS = [
    ("--tls -s 10", ["--tls", "-s", "10"], 2000, "--tls"),
    ("--tls --tls-resume -s 10", ["--tls", "--tls-resume", "-s", "10"], 2000, "--tls"),
    ("--tls -d -s 10", ["--tls", "-d", "-s", "10"], 20000, "--tls"),
    ("--tls-wrapper -s 10", ["--tls-wrapper", "-s", "10"], 2000, "--tls-wrapper"),
]
# openssl s_time, as the issue gives it and without a trust store: by
# default OpenSSL looks the server's issuer up in its CA directory on
# every connection (directory scans, stat calls) and verifies the chain
# (one more ECDSA verify); level encrypt, which our rows use, does
# neither. (key, extra options)
STIME_VARIANTS = [
    ("s_time", []),
    ("s_time -no-CA", ["-no-CApath", "-no-CAfile", "-no-CAstore"]),
]
TLS_NOTES = []
TLS_BEGIN = "<!-- bench:tls:begin -->"
TLS_END = "<!-- bench:tls:end -->"


def tls_note(msg):
    log("note:", msg)
    if msg not in TLS_NOTES:
        TLS_NOTES.append(msg)


def ensure_tool(names, packages):
    """The first of names on PATH (or in /usr/sbin, /usr/bin); apt-get
    installs the package when it is missing and we run as root."""
    def find():
        for n in names:
            for p in (shutil.which(n), "/usr/sbin/" + n, "/usr/bin/" + n):
                if p and os.access(p, os.X_OK):
                    return p
        return None
    path = find()
    if path or os.geteuid() != 0 or not shutil.which("apt-get"):
        return path
    install = ["apt-get", "install", "-y"] + packages.split()
    for cmds in ([install], [["apt-get", "update"], install]):
        log("bench: %s is missing; %s" % (names[0], " && ".join(" ".join(c) for c in cmds)))
        for c in cmds:
            try:
                subprocess.run(["timeout", "300"] + c, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False)
            except OSError:
                pass
        path = find()
        if path:
            return path
    return None


def spawn_bg(argv, outfile, errfile):
    """posix_spawn argv in its own process group, stdout and stderr to files."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, outfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, errfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    return os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=actions, setpgroup=0)


class TlsSink:
    """examples/sink.rs with --tls or --tls-wrapper, fresh for each run and
    bounded by timeout(1) and its own --seconds. It prints its summary and
    exits when --messages have arrived or --seconds have passed; wait4 on
    timeout(1) gives the sink's CPU (timeout reaps it)."""

    def __init__(self, workdir, flag, seconds, messages=None):
        self.out_path = os.path.join(workdir, "tls-sink.out")
        self.err_path = os.path.join(workdir, "tls-sink.err")
        seconds = max(1, int(seconds))
        argv = [shutil.which("timeout"), "-k", "5", str(seconds + 30), TLS_SINK, flag,
                "--seconds", str(seconds)]
        if messages:
            argv += ["--messages", str(messages)]
        self.pid = spawn_bg(argv, self.out_path, self.err_path)
        self.status = self.ru = None
        self.addr = None
        LIVE_SINKS.append(self)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.addr is None:
            if self.reap(False):
                break
            try:
                with open(self.out_path) as f:
                    for line in f:
                        if line.startswith("listening "):
                            self.addr = line.split()[1]
                            break
            except OSError:
                pass
            if self.addr is None:
                time.sleep(0.02)
        if self.addr is None:
            self.stop()
            die("our sink did not start: %s %s" % (" ".join(argv), self.stderr()[-300:]))

    def reap(self, block):
        if self.status is not None:
            return True
        try:
            pid, status, ru = os.wait4(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.status = -1
            return True
        if pid == 0:
            return False
        self.status, self.ru = status, ru
        return True

    def finish(self, wait):
        """Waits up to wait seconds for the summary; returns its counters."""
        deadline = time.monotonic() + wait
        while not self.reap(False) and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.status is None:
            tls_note("the sink had not finished %g s after the client; stopped it "
                     "(no summary for that run)" % wait)
        self.stop()
        return self.summary()

    def cpu(self):
        return None if self.ru is None else self.ru.ru_utime + self.ru.ru_stime

    def summary(self):
        out = {}
        try:
            with open(self.out_path, errors="replace") as f:
                text = f.read()
        except OSError:
            return out
        for line in text.split("\n"):
            if line.startswith("sink received:"):
                for kv in line.split(":", 1)[1].split():
                    k, _, v = kv.partition("=")
                    if v.isdigit():
                        out[k] = int(v)
            elif line.startswith("tls: "):
                t = line.translate(str.maketrans("(),", "   ")).split()
                try:
                    out["handshakes"] = int(t[1])
                    out["resumed"] = int(t[t.index("resumed") - 1])
                    out["failed"] = int(t[t.index("failed") - 1])
                except (ValueError, IndexError):
                    pass
        return out

    def stderr(self):
        return read_text(self.err_path)

    def stop(self):
        if self.status is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except OSError:
                pass
            deadline = time.monotonic() + 5
            while not self.reap(False) and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.status is None:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.reap(True)
        if self in LIVE_SINKS:
            LIVE_SINKS.remove(self)


class TlsRun:
    """One client run in the TLS section."""

    def __init__(self, **kw):
        self.ok = False
        self.wall = self.cpu = self.user = None
        self.messages = 0
        self.handshakes = self.full = self.resumed = 0
        self.sink = {}
        self.sink_cpu = None
        self.status = 0
        self.err = ""
        self.syscalls = None
        self.__dict__.update(kw)


def parse_strace_calls(path):
    """{syscall: calls} from `strace -c` output, with "total"."""
    calls = {}
    try:
        with open(path) as f:
            for line in f:
                t = line.split()
                if len(t) < 5 or not t[0][0].isdigit():
                    continue
                # % time, seconds, usecs/call, calls[, errors], name
                try:
                    calls[t[-1]] = int(t[3])
                except ValueError:
                    pass
    except OSError:
        pass
    return calls or None


def tls_run_ours(row, m, workdir, strace=None):
    label, opts, _, flag = row
    if strace:  # one session: the counts do not depend on scheduling
        opts = list(opts)
        opts[opts.index("-s") + 1] = "1"
    sink = TlsSink(workdir, flag, RUN_TIMEOUT, messages=m)
    outfile = os.path.join(workdir, "client.out")
    errfile = os.path.join(workdir, "client.err")
    argv = [OURS, "--report=json"] + opts + ["-m", str(m), sink.addr]
    trace_out = os.path.join(workdir, "strace.out")
    if strace:
        argv = [strace, "-f", "-c", "-o", trace_out, "--"] + argv
    try:
        wall, ru, status, timed_out = spawn_wait(
            argv, client_env("ours"), errfile, RUN_TIMEOUT * (4 if strace else 1),
            outfile=outfile)
        summary = sink.finish(wait=5)
    finally:
        sink.stop()
    code = os.waitstatus_to_exitcode(status)
    with open(errfile, errors="replace") as f:
        err = f.read().strip()
    r = TlsRun(wall=wall, cpu=ru.ru_utime + ru.ru_stime, user=ru.ru_utime,
               status=code, err=err, sink=summary, sink_cpu=sink.cpu())
    try:
        with open(outfile) as f:
            rep = json.load(f)
        r.messages = rep["messages"]["accepted"]
        r.handshakes = rep["tls"]["handshakes"]
        r.full = rep["tls"]["full"]
        r.resumed = rep["tls"]["resumed"]
    except (OSError, ValueError, KeyError, TypeError):
        r.err = "no JSON report; " + r.err
    r.ok = code == 0 and not timed_out and r.messages == m
    if timed_out:
        r.err = "timed out; " + r.err
    if r.ok and summary.get("messages", m) != m:
        tls_note("`%s -m %d`: the sink counted %s of %d messages"
                 % (label, m, summary.get("messages"), m))
    if r.ok and not strace and (summary.get("handshakes", r.handshakes) != r.handshakes
                                or summary.get("resumed", r.resumed) != r.resumed):
        tls_note("`%s -m %d`: the client reported %d handshakes (%d resumed), the sink "
                 "%s (%s resumed)" % (label, m, r.handshakes, r.resumed,
                                     summary.get("handshakes"), summary.get("resumed")))
    if strace:
        r.syscalls = parse_strace_calls(trace_out)
    return r


STIME_RE = re.compile(r"(\d+) connections in ([\d.]+)s; ([\d.]+) connections/user sec")


def tls_run_stime(openssl, workdir, extra, strace=None, seconds=None):
    """openssl s_time -new against a fresh SMTPS sink: full handshakes, one
    at a time, in one process."""
    seconds = seconds or TLS_STIME_SECONDS
    sink = TlsSink(workdir, "--tls-wrapper", seconds + 1)
    outfile = os.path.join(workdir, "stime.out")
    errfile = os.path.join(workdir, "stime.err")
    argv = [openssl, "s_time", "-connect", sink.addr, "-new", "-time", str(seconds)] + extra
    trace_out = os.path.join(workdir, "strace.out")
    if strace:
        argv = [strace, "-f", "-c", "-o", trace_out, "--"] + argv
    try:
        wall, ru, status, timed_out = spawn_wait(
            argv, client_env("ours"), errfile, seconds * 4 + 30, outfile=outfile)
        summary = sink.finish(wait=seconds + 5)
    finally:
        sink.stop()
    code = os.waitstatus_to_exitcode(status)
    with open(outfile, errors="replace") as f:
        out = f.read()
    with open(errfile, errors="replace") as f:
        err = f.read().strip()
    r = TlsRun(wall=wall, cpu=ru.ru_utime + ru.ru_stime, user=ru.ru_utime,
               status=code, err=err, sink=summary, sink_cpu=sink.cpu())
    mt = STIME_RE.search(out)
    if mt:
        r.handshakes = r.full = int(mt.group(1))
        r.stime_user_rate = float(mt.group(3))
    r.ok = code == 0 and not timed_out and r.handshakes > 0
    if not r.ok:
        r.err = (out.strip().split("\n") + [""])[-1] + " " + err
    if strace:
        r.syscalls = parse_strace_calls(trace_out)
    return r


def tls_run_postal(postal, workdir):
    """Debian's postal against a fresh STARTTLS sink for TLS_POSTAL_SECONDS:
    10 threads, one message per connection, TLS on every connection
    (-s 100), headers only (-m 0), no rate limit. postal runs until it is
    killed (SIGINT does not stop it; SIGTERM does) and prints a line a
    minute, so its figures are the sink's counts over the window and its
    CPU is from wait4."""
    users = os.path.join(workdir, "postal-users")
    with open(users, "w") as f:
        f.write("foo@example.com\n")
    secs = TLS_POSTAL_SECONDS
    sink = TlsSink(workdir, "--tls", secs + 1)
    port = sink.addr.rsplit(":", 1)[1]
    outfile = os.path.join(workdir, "postal.out")
    errfile = os.path.join(workdir, "postal.err")
    argv = [shutil.which("timeout"), "-s", "TERM", "-k", "2", str(secs), postal,
            "-m", "0", "-t", "10", "-c", "1", "-s", "100", "-r", "1000000",
            "[127.0.0.1]%s" % port, users]
    try:
        wall, ru, status, timed_out = spawn_wait(argv, client_env("ours"), errfile,
                                                 secs + 20, outfile=outfile)
        summary = sink.finish(wait=secs + 5)
    finally:
        sink.stop()
    with open(errfile, errors="replace") as f:
        err = f.read()
    r = TlsRun(wall=wall, cpu=ru.ru_utime + ru.ru_stime, user=ru.ru_utime,
               sink=summary, sink_cpu=sink.cpu(), err=err)
    r.messages = summary.get("messages", 0)
    r.handshakes = r.full = summary.get("handshakes", 0)
    r.failed = summary.get("failed", 0)
    r.connections = summary.get("connections", 0)
    r.handshake_errors = err.count("Can't gnutls_handshake")
    if os.WIFSIGNALED(status):
        r.how = "killed by signal %d%s after %.1f s" % (
            os.WTERMSIG(status), " (SIGSEGV)" if os.WTERMSIG(status) == 11 else "", wall)
    else:
        code = os.waitstatus_to_exitcode(status)
        r.how = "stopped by SIGTERM after %d s" % secs if code == 124 else \
            "exited with status %d after %.1f s" % (code, wall)
    r.status = 0
    r.ok = r.handshakes > 0
    r.window = min(wall, secs)
    return r


SWAKS_RUNS = 20


def tls_run_swaks(swaks, workdir):
    """swaks --tls, SWAKS_RUNS times in a row against a fresh STARTTLS sink:
    one process, one connection, one message each. Wall and CPU are
    summed over the processes."""
    n = SWAKS_RUNS
    sink = TlsSink(workdir, "--tls", RUN_TIMEOUT, messages=n)
    port = sink.addr.rsplit(":", 1)[1]
    errfile = os.path.join(workdir, "swaks.err")
    argv = [swaks, "--server", "127.0.0.1", "--port", port, "--tls",
            "--to", "foo@example.com", "--from", "foo@example.com", "--silent", "2"]
    wall = cpu = user = 0.0
    good = 0
    err = ""
    try:
        for _ in range(n):
            w, ru, status, timed_out = spawn_wait(argv, client_env("ours"), errfile, 20)
            wall += w
            cpu += ru.ru_utime + ru.ru_stime
            user += ru.ru_utime
            if os.waitstatus_to_exitcode(status) == 0 and not timed_out:
                good += 1
            else:
                with open(errfile, errors="replace") as f:
                    err = f.read().strip()
        summary = sink.finish(wait=5)
    finally:
        sink.stop()
    r = TlsRun(wall=wall, cpu=cpu, user=user, sink=summary, sink_cpu=sink.cpu(), err=err)
    r.messages = good
    r.handshakes = r.full = summary.get("handshakes", 0)
    r.ok = good == n and r.handshakes == n
    r.status = 0 if r.ok else 1
    return r


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class TlsStats:
    def __init__(self, runs):
        self.runs = runs
        good = [r for r in runs if r.ok]
        self.failures = len(runs) - len(good)
        self.wall = med(r.wall for r in good)
        self.cpu = med(r.cpu for r in good)
        self.messages = med(r.messages for r in good)
        self.handshakes = med(r.handshakes for r in good)
        self.full = med(r.full for r in good)
        self.resumed = med(r.resumed for r in good)
        # Sink CPU per handshake counts the handshakes the sink saw fail
        # too: they cost it the crypto (s_time closes before reading the
        # session tickets).

    @staticmethod
    def value(r, name):
        if name == "sink_hs":
            if "handshakes" not in r.sink:
                return None
            return r.sink["handshakes"] + r.sink.get("failed", 0)
        return getattr(r, name)

    def ratio_median(self, num, den, scale=1.0):
        """The median over the good runs of num/den (attribute names): a
        per-run ratio, since s_time's and postal's counts vary by run."""
        xs = []
        for r in self.runs:
            a, b = self.value(r, num), self.value(r, den)
            if r.ok and a is not None and b:
                xs.append(a / b * scale)
        return med(xs)

    def rate(self, n):
        """n per second of wall time."""
        return self.ratio_median(n, "wall")

    def per(self, x, n):
        """Microseconds of x (a CPU time) per n."""
        return self.ratio_median(x, n, 1e6)

    def per_core(self):
        """Handshakes per second of client CPU."""
        return self.ratio_median("handshakes", "cpu")


def run_tls(nofile, strace):
    """The TLS section: returns its markdown."""
    t_start = time.monotonic()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = loadavg()
    if not os.access(TLS_SINK, os.X_OK):
        msg = ("TLS rows skipped: our sink is missing (%s; `cargo build --release "
               "--example sink`)" % os.path.relpath(TLS_SINK, ROOT))
        log("bench: " + msg)
        return "\n".join([TLS_BEGIN, "## TLS", "", msg + ".", "", TLS_END, ""])
    openssl = ensure_tool(["openssl"], "openssl")
    postal = ensure_tool(["postal"], "postal")
    # swaks needs IO::Socket::SSL and Net::SSLeay for --tls.
    swaks = ensure_tool(["swaks"], "swaks libio-socket-ssl-perl libnet-ssleay-perl")
    perl_tls = ["perl", "-MIO::Socket::SSL", "-MNet::SSLeay", "-e", "1"]
    if swaks and subprocess.run(perl_tls, capture_output=True).returncode != 0:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            subprocess.run(["timeout", "300", "apt-get", "install", "-y",
                            "libio-socket-ssl-perl", "libnet-ssleay-perl"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if subprocess.run(perl_tls, capture_output=True).returncode != 0:
            tls_note("swaks is there but Perl's IO::Socket::SSL is not: no swaks row")
            swaks = None
    if not openssl:
        tls_note("openssl is unavailable: the s_time row is skipped")
    if not postal:
        tls_note("postal is unavailable: its row is skipped")
    if not swaks:
        tls_note("swaks is unavailable: its row is skipped")
    rows = [(r, scaled(r[2])) for r in TLS_ROWS]
    runs = {r[0]: [] for r in TLS_ROWS}
    for key, _ in STIME_VARIANTS:
        runs[key] = []
    runs["swaks"] = []
    postal_runs = []
    workdir = tempfile.mkdtemp(prefix="smtp-bench-tls.")
    os.chmod(workdir, 0o755)
    entries = [("ours", row, m) for row, m in rows]
    if openssl:
        entries += [("s_time", key, extra) for key, extra in STIME_VARIANTS]
    if swaks:
        entries.append(("swaks", None, None))
    log("bench: TLS rows, rounds=%d" % ROUNDS)
    traces = {}
    try:
        for rnd in range(ROUNDS):
            order = entries if rnd % 2 == 0 else entries[::-1]
            for which, row, m in order:
                if which == "ours":
                    r = tls_run_ours(row, m, workdir)
                    runs[row[0]].append(r)
                    name = "%s -m %d" % (row[0], m)
                elif which == "swaks":
                    r = tls_run_swaks(swaks, workdir)
                    runs["swaks"].append(r)
                    name = "swaks --tls, %d in a row" % SWAKS_RUNS
                else:
                    r = tls_run_stime(openssl, workdir, m)
                    runs[row].append(r)
                    name = stime_label(m)
                log("  %-34s round %d: %s %.3fs cpu %.3fs handshakes %d (%d resumed) "
                    "sink %s%s" % (name, rnd + 1, "ok" if r.ok else "FAILED(%d)" % r.status,
                                   r.wall, r.cpu, r.handshakes, r.resumed, r.sink,
                                   "" if r.ok else " " + r.err[-200:]))
                if not r.ok:
                    tls_note("`%s` round %d failed (exit %d): %s"
                             % (name, rnd + 1, r.status, r.err[-200:].replace("\n", " ")))
            # postal: every round while it gets handshakes through, else once.
            if postal and (rnd == 0 or any(p.ok for p in postal_runs)):
                p = tls_run_postal(postal, workdir)
                postal_runs.append(p)
                log("  %-34s round %d: %s; sink %s; cpu %.3fs; %d \"Can't gnutls_handshake\""
                    % ("postal -t 10 -c 1 -s 100", rnd + 1, p.how, p.sink, p.cpu,
                       p.handshake_errors))
        if strace:
            for row, _ in rows:
                r = tls_run_ours(row, TLS_STRACE_M, workdir, strace=strace)
                traces[row[0]] = r
                log("  %-34s strace -s 1 -m %d: %s %s"
                    % (row[0], TLS_STRACE_M, "ok" if r.ok else "FAILED",
                       (r.syscalls or {}).get("total")))
            for key, extra in (STIME_VARIANTS if openssl else []):
                r = tls_run_stime(openssl, workdir, extra, strace=strace, seconds=2)
                traces[key] = r
                log("  %-34s strace: %s %d handshakes %s" % (
                    stime_label(extra, 2), "ok" if r.ok else "FAILED", r.handshakes,
                    (r.syscalls or {}).get("total")))
    finally:
        kill_sinks()
        shutil.rmtree(workdir, ignore_errors=True)
    floor = crypto_floor(openssl) if openssl else {}
    elapsed = time.monotonic() - t_start
    return tls_report(rows, runs, postal_runs, traces, openssl, postal, strace,
                      started, elapsed, load_start, floor, swaks)


def crypto_floor(openssl):
    """Single-core rates of the public-key operations a client's full TLS
    1.3 handshake needs, from `openssl speed`: {name: ops per second}."""
    try:
        p = subprocess.run(["timeout", "60", openssl, "speed", "-seconds", "1",
                            "ecdhx25519", "ecdhp256", "ecdhp384", "ecdsap256"],
                           capture_output=True, text=True, timeout=90)
    except (OSError, subprocess.SubprocessError):
        return {}
    rates = {}
    for line in p.stdout.split("\n"):
        t = line.split()
        try:
            if "ecdsa" in line and "(nistp256)" in line:
                rates["p256 verify"] = float(t[-1])
            elif "ecdh" in line and "(X25519)" in line:
                rates["x25519"] = float(t[-1])
            elif "ecdh" in line and "(nistp256)" in line:
                rates["p256 ecdh"] = float(t[-1])
            elif "ecdh" in line and "(nistp384)" in line:
                rates["p384 ecdh"] = float(t[-1])
        except (ValueError, IndexError):
            pass
    return rates


def floor_lines(rates):
    """What the client's public-key work per full handshake costs at
    OpenSSL's single-core speed: two key-exchange operations (key pair,
    shared secret; the first is counted as a full one, so this is an upper
    bound) and one ECDSA P-256 verify (CertificateVerify; level encrypt
    checks no chain)."""
    v = rates.get("p256 verify")
    if not v:
        return []
    out = ["| key share | µs per handshake (2 × key exchange + 1 × P-256 verify) | "
           "handshakes per CPU-s |", "|---|---:|---:|"]
    for name, key in (("X25519", "x25519"), ("secp256r1", "p256 ecdh"),
                      ("secp384r1", "p384 ecdh")):
        if rates.get(key):
            us = (2 / rates[key] + 1 / v) * 1e6
            out.append("| %s | %.0f | %s |" % (name, us, fmt_rate(1e6 / us)))
    return out


def stime_label(extra, seconds=None):
    return "openssl s_time -new -time %d%s" % (
        seconds or TLS_STIME_SECONDS, "".join(" " + x for x in extra))


def tool_version(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (p.stdout + p.stderr).strip().split("\n")[0]
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dpkg_version(package):
    v = tool_version(["dpkg-query", "-W", "-f", "${Version}", package])
    return v if v and "no packages" not in v else "unknown"


def syscall_cells(r, per):
    """total, writes, reads, getrandom per `per` (messages or handshakes)."""
    c = r.syscalls if r is not None and r.ok else None
    if not c or not per:
        return ["n/a"] * 4
    total = c.get("total")
    writes = sum(c.get(k, 0) for k in ("write", "writev", "sendto", "sendmsg"))
    reads = sum(c.get(k, 0) for k in ("read", "readv", "recvfrom", "recvmsg"))
    return [fmt(total / per if total else None, "%.1f"), "%.1f" % (writes / per),
            "%.1f" % (reads / per), "%.1f" % (c.get("getrandom", 0) / per)]


def tls_report(rows, runs, postal_runs, traces, openssl, postal, strace,
               started, elapsed, load_start, floor, swaks=None):
    head = ["row", "m", "wall s", "msg/s", "handshakes (full/resumed)", "handshakes/s",
            "client CPU µs/msg", "client CPU µs/handshake", "handshakes per client CPU-s",
            "sink CPU µs/handshake"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    stats = {}
    for row, m in rows:
        st = TlsStats(runs[row[0]])
        stats[row[0]] = st
        reuse = "-d" in row[1]
        fails = " (failed runs: %d)" % st.failures if st.failures else ""
        lines.append("| " + " | ".join([
            "`%s -m %d`%s" % (row[0], m, fails), str(m), fmt(st.wall, "%.3f"),
            fmt_rate(st.rate("messages")),
            "n/a" if st.handshakes is None else "%d (%d/%d)" % (st.handshakes, st.full, st.resumed),
            fmt_rate(st.rate("handshakes")),
            fmt(st.per("cpu", "messages"), "%.0f"),
            "–" if reuse else fmt(st.per("cpu", "handshakes"), "%.0f"),
            "–" if reuse else fmt_rate(st.per_core()),
            "–" if reuse else fmt(st.per("sink_cpu", "sink_hs"), "%.0f"),
        ]) + " |")
    stimes = []
    for key, extra in (STIME_VARIANTS if openssl else []):
        st_time = TlsStats(runs[key])
        stimes.append((key, extra, st_time))
        fails = " (failed runs: %d)" % st_time.failures if st_time.failures else ""
        lines.append("| " + " | ".join([
            "`%s` (SMTPS sink)%s" % (stime_label(extra), fails), "–",
            fmt(st_time.wall, "%.3f"), "–",
            "n/a" if st_time.handshakes is None else "%d (%d/0)" % (st_time.handshakes, st_time.full),
            fmt_rate(st_time.rate("handshakes")), "–",
            fmt(st_time.per("cpu", "handshakes"), "%.0f"),
            fmt_rate(st_time.per_core()),
            fmt(st_time.per("sink_cpu", "sink_hs"), "%.0f"),
        ]) + " |")
    if swaks:
        sw = TlsStats(runs["swaks"])
        fails = " (failed runs: %d)" % sw.failures if sw.failures else ""
        lines.append("| " + " | ".join([
            "`swaks --tls` (STARTTLS sink; one process per message, %d in a row)%s"
            % (SWAKS_RUNS, fails), str(SWAKS_RUNS), fmt(sw.wall, "%.3f"),
            fmt_rate(sw.rate("messages")),
            "n/a" if sw.handshakes is None else "%d (%d/0)" % (sw.handshakes, sw.full),
            fmt_rate(sw.rate("handshakes")), fmt(sw.per("cpu", "messages"), "%.0f"),
            fmt(sw.per("cpu", "handshakes"), "%.0f"), fmt(sw.per_core(), "%.1f"),
            fmt(sw.per("sink_cpu", "sink_hs"), "%.0f")]) + " |")
    postal_line = None
    if postal and postal_runs:
        good = [p for p in postal_runs if p.ok]
        if good:
            pst = TlsStats(good)
            win = med(p.window for p in good)
            lines.append("| " + " | ".join([
                "postal -t 10 -c 1 -s 100 -m 0 (STARTTLS sink, %d s)" % TLS_POSTAL_SECONDS, "–",
                fmt(win, "%.3f"), fmt_rate(pst.messages / win),
                "%d (%d/0)" % (pst.handshakes, pst.full), fmt_rate(pst.handshakes / win),
                fmt(pst.per("cpu", "messages"), "%.0f"),
                fmt(pst.per("cpu", "handshakes"), "%.0f"), fmt_rate(pst.per_core()),
                fmt(pst.per("sink_cpu", "sink_hs"), "%.0f")]) + " |")
        p = postal_runs[0]
        postal_line = (
            "postal %s (`postal -m 0 -t 10 -c 1 -s 100 -r 1000000 [127.0.0.1]PORT users` "
            "against the STARTTLS sink, %d s): %s; the sink saw %d connections, "
            "%d messages, %d TLS handshakes (%d failed); postal printed \"Can't "
            "gnutls_handshake\" %d times and used %.2f s of CPU."
            % (dpkg_version("postal"), TLS_POSTAL_SECONDS, p.how, p.connections,
               p.messages, p.handshakes, p.failed, p.handshake_errors, p.cpu))
    table_md = "\n".join(lines)

    # The per-core comparison with s_time: against each variant; the goal
    # is against the faster one.
    cmp_lines = []
    misses = []
    bases = [(key, extra, st) for key, extra, st in stimes if st.per_core()]
    if bases:
        best = max(st.per_core() for _, _, st in bases)
        head = ["client", "full handshakes per CPU-s"]
        head += ["÷ `s_time%s`" % "".join(" " + x for x in extra) for _, extra, _ in bases]
        head.append("goal: ≥ %.2f× the faster s_time" % TLS_TARGET_PER_CORE)
        cmp_lines.append("| " + " | ".join(head) + " |")
        cmp_lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for key, extra, st in bases:
            cmp_lines.append("| `%s` | %s | %s | – |" % (
                stime_label(extra), fmt_rate(st.per_core()),
                " | ".join("%.2f" % (st.per_core() / b.per_core()) for _, _, b in bases)))
        for row, m in rows:
            st = stats[row[0]]
            if "-d" in row[1] or st.per_core() is None:
                continue
            if st.full and st.resumed:
                continue  # mostly resumed: not a full-handshake rate
            q = st.per_core() / best
            ok = q >= TLS_TARGET_PER_CORE
            cmp_lines.append("| `%s -m %d` | %s | %s | %s |" % (
                row[0], m, fmt_rate(st.per_core()),
                " | ".join("%.2f" % (st.per_core() / b.per_core()) for _, _, b in bases),
                passfail(ok)))
            if not ok:
                misses.append("`%s`: %s full handshakes per CPU-s, %.2f× s_time's best %s "
                              "(goal ≥ %.2f×)" % (row[0], fmt_rate(st.per_core()), q,
                                                  fmt_rate(best), TLS_TARGET_PER_CORE))
        for key, extra, st in bases:
            user_rates = [r.stime_user_rate for r in st.runs
                          if r.ok and hasattr(r, "stime_user_rate")]
            if user_rates:
                cmp_lines.append("")
                cmp_lines.append("`%s` printed (median) %s connections per second of *user* "
                                 "CPU; the tables divide by user+sys from wait4, for every client."
                                 % (stime_label(extra), fmt_rate(statistics.median(user_rates))))
    fl = floor_lines(floor)
    if fl:
        cmp_lines.append("")
        cmp_lines.append("The public-key floor, from `openssl speed -seconds 1` in the same run "
                         "(OpenSSL's code, one core; the client uses ring, whose figures differ):")
        cmp_lines.append("")
        cmp_lines.extend(fl)

    sys_lines = []
    if traces:
        sys_lines.append("| run | per | syscalls | writes | reads | getrandom |")
        sys_lines.append("|---|---|---:|---:|---:|---:|")
        for row, _ in rows:
            r = traces.get(row[0])
            label = row[0].replace("-s 10", "-s 1")
            per, what = (r.messages, "message") if r is not None else (None, "message")
            if r is not None and "-d" not in row[1]:
                what = "message (= handshake)"
            sys_lines.append("| `%s -m %d` | %s | %s |" % (
                label, TLS_STRACE_M, what, " | ".join(syscall_cells(r, per))))
        for key, extra in STIME_VARIANTS:
            r = traces.get(key)
            if r is not None:
                sys_lines.append("| `%s` (%d handshakes) | handshake | %s |" % (
                    stime_label(extra, 2), r.handshakes,
                    " | ".join(syscall_cells(r, r.handshakes))))

    stime_failed = sum(r.sink.get("failed", 0) for key, _ in STIME_VARIANTS
                       for r in runs.get(key, []))
    if stime_failed:
        tls_note("The sink counted %d of s_time's handshakes as failed (all rounds): s_time "
                 "closes right after its Finished, so the sink's write of the session "
                 "tickets that follow meets ECONNRESET (seen with strace). The handshake "
                 "itself, and all of its public-key work, was done; the handshake counts "
                 "above are s_time's own." % stime_failed)
    every = ["| row | runs: wall s / client CPU s / handshakes (resumed) |", "|---|---|"]
    for row, m in rows:
        every.append("| `%s -m %d` | %s |" % (row[0], m, ", ".join(
            ("%.2f/%.2f/%d (%d)" % (r.wall, r.cpu, r.handshakes, r.resumed)) if r.ok
            else "failed (exit %d)" % r.status for r in runs[row[0]])))
    for key, extra in (STIME_VARIANTS if openssl else []):
        every.append("| `%s` | %s |" % (stime_label(extra), ", ".join(
            ("%.2f/%.2f/%d" % (r.wall, r.cpu, r.handshakes)) if r.ok else "failed"
            for r in runs[key])))
    if swaks:
        every.append("| `swaks --tls` ×%d | %s |" % (SWAKS_RUNS, ", ".join(
            ("%.2f/%.2f/%d" % (r.wall, r.cpu, r.handshakes)) if r.ok else "failed"
            for r in runs["swaks"])))

    print()
    print(table_md)
    if cmp_lines:
        print()
        print("\n".join(cmp_lines))
    if postal_line:
        print()
        print(postal_line)
    if sys_lines:
        print()
        print("\n".join(sys_lines))
    if misses:
        print("\nMissed TLS goals:")
        for x in misses:
            print("  - " + x)

    out = [TLS_BEGIN, "## TLS", ""]
    out.append("Generated by `make bench` (or `make bench BENCH_ONLY=tls`, which rewrites "
               "only this section); see [benches/README.md](benches/README.md).")
    out.append("")
    out.append("- date: %s (took %.0f s); ours: `%s` at %s; BENCH_ROUNDS=%d, BENCH_SCALE=%g"
               % (started, elapsed, os.path.relpath(OURS, ROOT), git_rev(), ROUNDS, SCALE))
    out.append("- sink: `%s` (examples/sink.rs: a thread per connection, rustls with ring, "
               "ECDSA P-256 leaf, tickets), a fresh one per run, `--tls` (STARTTLS) or "
               "`--tls-wrapper` (SMTPS)" % os.path.relpath(TLS_SINK, ROOT))
    out.append("- openssl: %s; postal: %s" % (
        tool_version([openssl, "version"]) if openssl else "unavailable",
        dpkg_version("postal") if postal else "unavailable"))
    out.append("- machine: %s CPUs (%s); load average at the start: %s; at the end: %s"
               % (os.cpu_count(), read_first("/proc/cpuinfo", "model name"),
                  load_start, loadavg()))
    out.append("")
    out.append("Medians over the rounds (each round runs every row, in reverse order in "
               "even rounds, so `--tls-wrapper` and s_time alternate which goes first). "
               "msg/s, handshakes/s and the per-handshake figures are medians of each run's own "
               "ratio (s_time's handshake count varies by run); client CPU is "
               "user+sys from wait4 (all threads); handshakes per client CPU-s is the "
               "per-core rate. Handshakes are the client's JSON report "
               "(`tls.handshakes`, `full`, `resumed`), checked against the sink's count; "
               "s_time's are its own count. Sink CPU is the sink process's user+sys "
               "(it shares the 2 cores with the client). On `-d` rows the per-handshake "
               "columns are left out (10 handshakes carry all the messages).")
    out.append("")
    out.append(table_md)
    out.append("")
    if cmp_lines:
        out.append("### Per core: full handshakes per client CPU second against `openssl s_time`")
        out.append("")
        out.append("s_time runs one handshake at a time in one process against a fresh "
                   "SMTPS sink (s_time has no STARTTLS); the `--tls-wrapper` row runs "
                   "our client against the same kind of listener. Ours also carries an SMTP "
                   "transaction on each connection; s_time only handshakes and closes.")
        out.append("")
        out.extend(cmp_lines)
        out.append("")
    if misses:
        out.append("Missed TLS goals:")
        out.append("")
        out.extend("- " + x for x in misses)
        out.append("")
    out.append("### postal")
    out.append("")
    if not postal:
        out.append("postal is unavailable (`apt-get install postal` failed or not root).")
    else:
        out.append(postal_line or "postal did not run.")
    out.append("")
    if sys_lines:
        out.append("### System calls (`strace -f -c`, one session, m=%d)" % TLS_STRACE_M)
        out.append("")
        out.append("Counts per message (each message is a connection and a full "
                   "handshake, but on the `-d` row) or per s_time handshake. writes = "
                   "write+writev+sendto+sendmsg, reads = read+readv+recvfrom+recvmsg.")
        out.append("")
        out.extend(sys_lines)
        out.append("")
    out.append("### Every TLS run")
    out.append("")
    out.extend(every)
    out.append("")
    if TLS_NOTES:
        out.append("### TLS notes")
        out.append("")
        out.extend("- " + n for n in TLS_NOTES)
        out.append("")
    out.append(TLS_END)
    out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# The report file


ANALYSIS_HEAD = "## Analysis (by hand"


def split_report(text):
    """(rows part, TLS part) of an existing BENCHMARKS.md, either may be ''."""
    tls = ""
    b, e = text.find(TLS_BEGIN), text.find(TLS_END)
    if b >= 0 and e > b:
        tls = text[b:e + len(TLS_END)] + "\n"
        main = text[:b]
    else:
        a = text.find(ANALYSIS_HEAD)
        main = text[:a] if a >= 0 else text
    return main.rstrip("\n") + "\n" if main.strip() else "", tls


def write_report(main_md, tls_md):
    """BENCHMARKS.md: the rows against the reference, the TLS section, then
    benches/analysis.md. A part this run did not measure (BENCH_ONLY) is
    kept from the existing file."""
    path = os.path.join(ROOT, OUTPUT)
    old_main = old_tls = ""
    if main_md is None or tls_md is None:
        try:
            with open(path) as f:
                old_main, old_tls = split_report(f.read())
        except OSError:
            pass
    parts = [main_md if main_md is not None else old_main,
             tls_md if tls_md is not None else old_tls]
    if not parts[0]:
        parts[0] = ("# Benchmarks: smtp-source (ours) vs Postfix 3.7.11 smtp-source\n\n"
                    "The rows against the reference have not been run (`make bench`).\n")
    analysis = os.path.join(ROOT, "benches", "analysis.md")
    if os.path.exists(analysis):
        with open(analysis) as f:
            parts.append(f.read())
    with open(path, "w") as f:
        f.write("\n".join(p.rstrip("\n") + "\n" for p in parts if p))
    log("bench: wrote %s" % OUTPUT)


# ---------------------------------------------------------------------------


def main():
    os.chdir(ROOT)
    selected = []
    for i, wl in enumerate(WORKLOADS, 1):
        if not ONLY or str(i) in ONLY:
            selected.append(wl)
    do_big = not ONLY or "big" in ONLY
    do_tls = not ONLY or "tls" in ONLY
    do_mix = not ONLY or "mix" in ONLY
    do_metrics = not ONLY or "metrics" in ONLY
    do_rows = bool(selected) or do_big or do_mix or do_metrics
    needed = [(OURS, "our smtp-source (cargo build --release)")]
    if do_rows:
        needed += [(REF, "the reference smtp-source (make reference)"),
                   (SINK, "smtp-sink (make reference)")]
    for path, what in needed:
        if not os.access(path, os.X_OK):
            die("%s is missing: %s" % (what, path))
    if not shutil.which("timeout"):
        die("timeout(1) is missing")
    nofile = raise_nofile()
    strace = ensure_strace()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main_md = (run_rows(selected, do_big, do_mix, do_metrics, nofile, strace)
               if do_rows else None)
    tls_md = run_tls(nofile, strace) if do_tls else None
    if OUTPUT != "-":
        write_report(main_md, tls_md)


def run_rows(selected, do_big, do_mix, do_metrics, nofile, strace):
    """The rows against the reference; returns their part of the report."""
    rss_floor = ensure_time()
    t_start = time.monotonic()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = loadavg()
    tw_max = 0
    rows = []
    mix_lines = []
    metrics_lines = []
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
            if sessions + 200 > nofile:
                # Each session may need a descriptor; a hard limit below
                # -s (no CAP_SYS_RESOURCE to raise it) caps the run.
                sessions = nofile - 200
                note("RLIMIT_NOFILE %d (hard) cannot hold -s %s: the many-sessions "
                     "run uses -s %d" % (nofile, opts[1], sessions))
                label = "-s %d -m %d" % (sessions, max(scaled(m0), sessions))
                opts = ["-s", str(sessions)]
                BIG_RUN[:] = [label]
            m = max(scaled(m0), sessions)
            big_lines.append("| client | result | wall s | msg/s | CPU s | peak RSS KiB |")
            big_lines.append("|---|---|---:|---:|---:|---:|")
            for which in ("ours", "ref"):
                r = run_client(which, (label, opts, m0, "inet"), m, workdir, nofile)
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
        if do_metrics:
            metrics_lines = run_metrics(workdir, nofile)
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
    if metrics_lines:
        print()
        print("\n".join(metrics_lines))

    misses = []
    for label, m, ref, ours in rows:
        tput = ratio(ours.rate, ref.rate)
        target = TARGET_THROUGHPUT_FOR.get(label, TARGET_THROUGHPUT)
        if tput is not None and tput < target:
            misses.append("`%s`: throughput %.2f× the reference (target ≥ %.2f×)"
                          % (label, tput, target))
        worst = worst_round(ref, ours)
        if label in STEADY and worst is not None and worst < target:
            misses.append("`%s`: worst round %.2f× the reference (target ≥ %.2f× "
                          "in every round)" % (label, worst, target))
        sysr = ratio(ours.syscalls, ref.syscalls)
        if sysr is not None and sysr > TARGET_SYSCALLS:
            misses.append("`%s`: %.2f syscalls/msg vs the reference's %.2f = %.2f× (target ≤ %.2f×)"
                          % (label, ours.syscalls, ref.syscalls, sysr, TARGET_SYSCALLS))
        rss_want = TARGET_RSS_FOR.get(label)
        rssr = ratio(ours.rss, ref.rss)
        if rss_want is not None and rssr is not None and rssr > rss_want:
            misses.append("`%s`: peak RSS %d KiB vs the reference's %d KiB = %.2f× (target ≤ %.2f×)"
                          % (label, ours.rss, ref.rss, rssr, rss_want))
        cpu_want = TARGET_CPU_FOR.get(label)
        cpur = ratio(ours.cpu_us, ref.cpu_us)
        if cpu_want is not None and cpur is not None and cpur > cpu_want:
            misses.append("`%s`: client CPU %.1f µs/msg vs the reference's %.1f = %.2f× (target ≤ %.2f×)"
                          % (label, ours.cpu_us, ref.cpu_us, cpur, cpu_want))
    if misses:
        print("\nMissed targets:")
        for x in misses:
            print("  - " + x)

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
               "client's ru_maxrss (median). CPU ours/ref compares client CPU per "
               "message. Worst round: the lowest ratio of round i's wall times. "
               "Sink core use: smtp-sink's CPU ÷ wall time (100%% = one core "
               "busy: the sink, not the client, is the limit). Targets: "
               "throughput ≥ %.2f× (pipelined rows: as listed, in every round), "
               "syscalls/msg ≤ %.1f×, peak RSS and CPU as listed."
               % (TARGET_THROUGHPUT, TARGET_SYSCALLS))
    out.append("")
    out.append(md)
    out.append("")
    if do_big:
        out.append("### Many sessions: `%s` (m=%d), one run each" % (BIG_RUN[0], big_m))
        out.append("")
        out.extend(big_lines)
        out.append("")
    if mix_lines:
        out.append("### Size mix: payload MB/s against `-l` at the mix's mean size")
        out.append("")
        out.extend(mix_lines)
        out.append("")
    if metrics_lines:
        out.append("### Live metrics: on against off (ours alone)")
        out.append("")
        out.extend(metrics_lines)
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
    log("bench: rows against the reference done (%.0f s)" % elapsed)
    return "\n".join(out)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        kill_sinks()
