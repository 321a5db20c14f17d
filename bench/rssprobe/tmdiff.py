"""Allocations alive after a burst that were not alive at idle, by where they were made.

    python bench/rssprobe/tmdiff.py PROBE/<pid>-1.tm PROBE/<pid>-3.tm [FRAMES]

Reads two tracemalloc snapshots of `python -m bench.rss --probe --variant 'tm=PYTHONTRACEMALLOC=10'`
(idle, after) and prints the new blocks of at most 512 bytes (pymalloc's) and the larger ones,
grouped by their FRAMES innermost frames (default 4), most blocks first.
"""
import collections
import sys
import tracemalloc


def main(idle_path, after_path, nframes=4):
    idle, after = tracemalloc.Snapshot.load(idle_path), tracemalloc.Snapshot.load(after_path)
    new = (collections.Counter((t.traceback, t.size) for t in after.traces)
           - collections.Counter((t.traceback, t.size) for t in idle.traces))
    small_n, small_b, big = collections.Counter(), collections.Counter(), collections.Counter()
    for (tb, size), n in new.items():
        key = " <- ".join(str(f) for f in list(tb)[::-1][:nframes])  # innermost first
        if size <= 512:
            small_n[key] += n
            small_b[key] += size * n
        else:
            big[key] += size * n
    print(f"new small blocks: {sum(small_n.values())}, {sum(small_b.values())} bytes")
    for key, n in small_n.most_common(45):
        print(f"{n:7d} {small_b[key]:9d}  {key}")
    print(f"new large blocks: {sum(big.values())} bytes")
    for key, b in big.most_common(15):
        print(f"{b:9d}  {key}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 4)
