#!/usr/bin/python3
"""Run oVirt MOM's daemon (momd) from a checkout, with a memory domain as its host.

    momd-domain.py MOM_CHECKOUT [momd options ...]

ballast's lab experiment (`ballast experiment lab-memknobs --configs momd --mom PATH`) runs
this; none of MOM's code is in ballast: it is imported from MOM_CHECKOUT. Everything momd
does is MOM's (its threads, libvirt interface, collectors, policy engine, Balloon and KSM
controllers), with one collector added: DomainMemory, for the config's `[host] collectors`.

Why: MOM's HostMemory reads /proc/meminfo, i.e. the whole machine. The experiment's guests
share a memory cgroup (the "domain") whose limit is what they may use together, and ballast's
rows see that domain as their host (mem_available = the limit, mem_free = limit - usage + the
domain's file cache). DomainMemory is HostMemory with those fields read from the cgroup
named in the config's `[Collector: DomainMemory] domain`, so that momd's policy sees the same
host ballast's does. Swap traffic stays HostMemory's (/proc/vmstat: only the domain swaps).
"""
import os
import runpy
import sys
import types


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def stat_kib(text, *keys):
    """The first of keys present in a memory.stat text, bytes -> KiB; None when absent."""
    values = {}
    for line in (text or '').splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    for k in keys:
        if k in values:
            return values[k] // 1024
    return None


def domain_reading(d, mem_total_kib):
    """(available, unused, free, anon) in KiB of the memory cgroup directory d, v2 or v1."""
    current = read(os.path.join(d, 'memory.current'))
    if current is not None:
        usage = int(current) // 1024
        limit_text = (read(os.path.join(d, 'memory.max')) or 'max').strip()
        limit = None if limit_text == 'max' else int(limit_text) // 1024
        stat = read(os.path.join(d, 'memory.stat'))
        cache = stat_kib(stat, 'file') or 0
        anon = stat_kib(stat, 'anon')
    else:
        usage = int(read(os.path.join(d, 'memory.usage_in_bytes'))) // 1024
        stat = read(os.path.join(d, 'memory.stat'))
        own = int(read(os.path.join(d, 'memory.limit_in_bytes'))) // 1024
        hier = stat_kib(stat, 'hierarchical_memory_limit')
        limit = min(own, hier) if hier is not None else own
        cache = stat_kib(stat, 'total_cache', 'cache') or 0
        anon = stat_kib(stat, 'total_rss', 'rss')
    available = mem_total_kib if limit is None else min(limit, mem_total_kib)
    unused = max(0, available - usage)
    free = min(available, unused + cache)
    return available, unused, free, anon


def install(mom_root):
    sys.path.insert(0, mom_root)
    from mom.Collectors.Collector import CollectionError, parse_int
    from mom.Collectors.HostMemory import HostMemory

    class DomainMemory(HostMemory):
        def __init__(self, properties):
            HostMemory.__init__(self, properties)
            self.domain = (properties.get('config') or {}).get('domain')
            if not self.domain:
                raise CollectionError('DomainMemory: no domain in [Collector: DomainMemory]')

        def collect(self):
            data = HostMemory.collect(self)
            self.meminfo.seek(0)
            total = parse_int('^MemTotal: (.*) kB', self.meminfo.read())
            try:
                available, unused, free, anon = domain_reading(self.domain, total)
            except (OSError, TypeError, ValueError) as e:
                raise CollectionError('DomainMemory: cannot read %s: %s' % (self.domain, e))
            data.update({'mem_available': available, 'mem_unused': unused, 'mem_free': free})
            if anon is not None:
                data['anon_pages'] = anon
            return data

    mod = types.ModuleType('mom.Collectors.DomainMemory')
    mod.DomainMemory = DomainMemory
    sys.modules['mom.Collectors.DomainMemory'] = mod


def main():
    if len(sys.argv) < 2 or not os.path.isfile(os.path.join(sys.argv[1], 'momd.in')):
        sys.stderr.write('usage: momd-domain.py MOM_CHECKOUT [momd options]: MOM_CHECKOUT must hold momd.in\n')
        sys.exit(2)
    root = os.path.abspath(sys.argv[1])
    install(root)
    momd = os.path.join(root, 'momd.in')
    sys.argv = [momd] + sys.argv[2:]
    runpy.run_path(momd, run_name='__main__')


if __name__ == '__main__':
    main()
