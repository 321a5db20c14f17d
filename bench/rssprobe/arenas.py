"""Which small objects sit in address ranges the idle dump did not use (arenas made by the burst).

    python bench/rssprobe/arenas.py PROBE/<pid>-1.addr PROBE/<pid>-3.addr [N]

Reads two `.addr` files of `python -m bench.rss --probe` (idle, after) and prints, for objects of
at most 512 bytes (pymalloc's), the 1 MiB buckets (id >> 20) used after but not at idle, the N
commonest types of the objects in them and how many objects each such bucket holds: an arena goes
back to the OS only when it holds none.
"""
import collections
import sys


def load(path):
    out = {}
    with open(path) as fh:
        for line in fh:
            addr, size, kind = line.split(" ", 2)
            if int(size) <= 512:
                out[int(addr)] = kind.strip()
    return out


def main(idle_path, after_path, top=40):
    idle, after = load(idle_path), load(after_path)
    idle_buckets = collections.Counter(a >> 20 for a in idle)
    after_buckets = collections.Counter(a >> 20 for a in after)
    new = {b for b in after_buckets if b not in idle_buckets}
    objs = [(a, k) for a, k in after.items() if (a >> 20) in new]
    print(f"idle: {len(idle_buckets)} buckets with small objects; after: {len(after_buckets)}; new: {len(new)}")
    print(f"objects in new buckets: {len(objs)}")
    for kind, n in collections.Counter(k for _, k in objs).most_common(top):
        print(f"{n:7d} {kind}")
    print("objects per new bucket:", sorted(collections.Counter(a >> 20 for a, _ in objs).values()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 40)
