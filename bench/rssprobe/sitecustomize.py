"""Measurement only (`python -m bench.rss --probe`): put on PYTHONPATH of the gateway under test, so
every Python process of it imports this at start-up. SIGUSR2 makes the process write what it holds
to RSS_PROBE_DIR/<pid>-<n>.txt: VmRSS and smaps_rollup, glibc's mallinfo2, pymalloc's own
statistics (sys._debugmallocstats), live objects by type, threads, asyncio tasks and open file
descriptors; to <pid>-<n>.addr the address, size and type of every object reachable from the
collector's (read by arenas.py beside this file), from the second dump on with <pid>-<n>.tuples (a
sample of the tuples in address ranges the first dump did not use, with their referrers); and to <pid>-<n>.tm a tracemalloc snapshot when
PYTHONTRACEMALLOC is set (read by tmdiff.py). Nothing of the gateway imports it."""
import os

_DIR = os.environ.get("RSS_PROBE_DIR")

if _DIR:
    import collections
    import ctypes
    import gc
    import signal
    import sys
    import tempfile
    import threading
    import tracemalloc

    _count = [0]
    _first_buckets = set()

    class _Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    def _read(path):
        try:
            with open(path) as fh:
                return fh.read()
        except OSError as exc:
            return repr(exc)

    def _dump(signum, frame):
        _count[0] += 1
        base = os.path.join(_DIR, f"{os.getpid()}-{_count[0]}")
        out = []
        status = _read("/proc/self/status")
        out += [ln for ln in status.splitlines() if ln.startswith(("VmRSS", "RssAnon", "RssFile", "Threads"))]
        out.append(_read("/proc/self/smaps_rollup"))
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallinfo2.restype = _Mallinfo2
            mi = libc.mallinfo2()
            out.append("mallinfo2: " + " ".join(f"{n}={getattr(mi, n)}" for n, _ in _Mallinfo2._fields_))
        except (OSError, AttributeError) as exc:
            out.append(f"mallinfo2: {exc!r}")
        objs = gc.get_objects()
        out.append(f"gc objects: {len(objs)}  gc counts: {gc.get_count()}")
        types = collections.Counter(type(o).__qualname__ + "@" + str(type(o).__module__) for o in objs)
        out += [f"  {n:8d} {t}" for t, n in types.most_common(60)]
        # where objects live: id() is the address; pymalloc's arenas are 1 MiB, so id >> 20 groups them
        # (roughly: an arena need not start on a 1 MiB boundary). Objects the collector does not track
        # (str, bytes, int, ...) are reached as referents of tracked ones.
        seen = {}
        for o in objs:
            seen[id(o)] = o
        for o in list(seen.values()):
            for r in gc.get_referents(o):
                if id(r) not in seen:
                    seen[id(r)] = r
        with open(base + ".addr", "w") as fh:
            for a, o in seen.items():
                fh.write(f"{a} {sys.getsizeof(o, 0)} {type(o).__module__}.{type(o).__qualname__}\n")
        # the tuples in ranges the first dump did not use: a sample, with what refers to each
        if not _first_buckets:
            _first_buckets.update(a >> 20 for a in seen)
        else:
            new = [o for a, o in seen.items() if type(o) is tuple and (a >> 20) not in _first_buckets]
            with open(base + ".tuples", "w") as fh:
                fh.write(f"{len(new)} tuples in new ranges\n")
                for o in new[:: max(1, len(new) // 60)]:
                    refs = [type(r).__qualname__ for r in gc.get_referrers(o) if r is not new and r is not seen]
                    fh.write(f"{repr(o)[:160]}  <- {refs[:4]}\n")
            del new
        del objs, seen
        out.append(f"threads: {threading.active_count()} " +
                   str(collections.Counter(t.name.rstrip("0123456789_-") for t in threading.enumerate())))
        try:
            import asyncio

            loop = asyncio.get_running_loop()
            tasks = asyncio.all_tasks(loop)
            out.append(f"asyncio tasks: {len(tasks)} " +
                       str(collections.Counter(t.get_coro().__qualname__ for t in tasks).most_common(10)))
        except RuntimeError:
            out.append("asyncio tasks: no running loop")
        fds = collections.Counter()
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds[os.readlink(f"/proc/self/fd/{fd}").split(":")[0]] += 1
            except OSError:
                pass
        out.append(f"fds: {dict(fds)}")
        with tempfile.TemporaryFile("w+") as tmp:  # _debugmallocstats writes to the C stderr
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(tmp.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            out.append(tmp.read())
        with open(base + ".txt", "w") as fh:
            fh.write("\n".join(out) + "\n")
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(base + ".tm")

    signal.signal(signal.SIGUSR2, _dump)
