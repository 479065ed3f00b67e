#!/usr/bin/env python3
"""Run oVirt MOM's own policy engine on ballast `policy eval` snapshots.

MOM's code is imported from the checkout given with --mom (none of it is in this
repository). Entities are built as MOM's Monitor.interrogate() builds them, Host and Guests
(a dict-values view) are bound as Policy.evaluate() binds them, every run gets a fresh
Evaluator, and any exception aborts the run, as in MOM.

Two modes:
  mom_eval.py --mom PATH --input SNAPSHOT.json [--fields FIELDS.json] POLICY [POLICY ...]
      like `ballast policy eval --input SNAPSHOT.json --policy POLICY ...`: the policies are
      concatenated in order; prints one result (or a list, for a list of snapshots).
  mom_eval.py --mom PATH --serve
      reads JSON lines {"policy": TEXT, "snapshots": [...], "fields": {...}} on stdin and
      writes one JSON line per request: the list of results (used by compare.mjs).

A result is {"host": {"controls", "vars"}, "guests": [{"name", "controls", "vars"}]} or
{"error": MESSAGE}. FIELDS is {"host": [...], "guest": [...]}: the statistics MOM's
collectors would declare (Entity.Stat/StatAvg refuse others); every field present in the
snapshot's samples of that kind is declared too.
"""
import argparse
import json
import math
import os
import sys
import types


def load_mom(root):
    # Import mom/Entity.py and mom/Policy/Parser.py without mom/__init__.py (the daemon).
    if not os.path.isfile(os.path.join(root, 'mom', 'Policy', 'Parser.py')):
        sys.stderr.write('mom_eval: %s is not a MOM checkout (no mom/Policy/Parser.py)\n' % root)
        sys.exit(2)
    for name, path in (('mom', 'mom'), ('mom.Policy', os.path.join('mom', 'Policy'))):
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(root, path)]
        sys.modules[name] = pkg
    import mom.Entity as entity_mod
    import mom.Policy.Parser as parser_mod
    return entity_mod, parser_mod


class SnapshotMonitor:
    """What an Entity asks of its monitor: the declared fields, a logger, a variable store."""

    def __init__(self, fields):
        self.valid_fields = fields

        class Quiet:
            def debug(self, *a):
                pass
        self.logger = Quiet()

    def update_variables(self, variables):
        pass


def declared(kind, entities, fields):
    out = set((fields or {}).get(kind) or [])
    for ent in entities:
        for row in ent.get('stats') or []:
            out.update(row.keys())
    return out


def make_entity(entity_mod, raw, fields):
    e = entity_mod.Entity(monitor=SnapshotMonitor(fields))
    for k, v in (raw.get('props') or {}).items():
        e._set_property(k, v)
    for k, v in (raw.get('vars') or {}).items():
        e._set_variable(k, v)
    e._set_statistics(raw.get('stats') or [])
    e._finalize()
    return e


def run_one(entity_mod, parser_mod, code, snap, fields):
    raw_guests = list(snap.get('guests') or [])
    host = make_entity(entity_mod, snap['host'], declared('host', [snap['host']], fields))
    guest_fields = declared('guest', raw_guests, fields)
    guests = [make_entity(entity_mod, g, guest_fields) for g in raw_guests]
    evaluator = parser_mod.Evaluator()
    evaluator.stack.set('Host', host, alloc=True)
    evaluator.stack.set('Guests', {i: g for i, g in enumerate(guests)}.values(), alloc=True)
    try:
        for expr in code:
            evaluator.eval(expr)
    except Exception as e:  # MOM aborts the whole run on any exception
        return {'error': '%s: %s' % (type(e).__name__, e)}
    return {
        'host': {'controls': host.controls, 'vars': host.variables},
        'guests': [{'name': g.Prop('name'), 'controls': g.controls, 'vars': g.variables} for g in guests],
    }


def run_policy(entity_mod, parser_mod, text, snapshots, fields):
    try:
        # Policy._cat_policies(): an empty policy is '0'.
        code = parser_mod.get_code(parser_mod.Evaluator(), text or '0')
    except Exception as e:
        return [{'error': 'policy does not load: %s: %s' % (type(e).__name__, e)} for _ in snapshots]
    return [run_one(entity_mod, parser_mod, code, s, fields) for s in snapshots]


def plain(v):
    """JSON-safe: non-finite floats as Python spells them in a string, other objects by repr."""
    if isinstance(v, float) and not math.isfinite(v):
        return {'$float': repr(v)}
    if isinstance(v, dict):
        return {(k if isinstance(k, str) else json.dumps(plain(k), default=repr)): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def dump(v, indent=None):
    return json.dumps(plain(v), default=repr, indent=indent, allow_nan=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--mom', required=True, help='path to a checkout of github.com/oVirt/mom')
    ap.add_argument('--serve', action='store_true', help='JSON lines on stdin and stdout (compare.mjs)')
    ap.add_argument('--input', help='snapshot JSON (one snapshot or a list)')
    ap.add_argument('--fields', help='JSON {"host": [...], "guest": [...]}: fields the collectors declare')
    ap.add_argument('policy', nargs='*', help='policy files, concatenated in order')
    args = ap.parse_args()
    entity_mod, parser_mod = load_mom(os.path.abspath(args.mom))
    sys.setrecursionlimit(10000)
    if args.serve:
        for line in sys.stdin:
            req = json.loads(line)
            out = run_policy(entity_mod, parser_mod, req['policy'], req['snapshots'], req.get('fields'))
            sys.stdout.write(dump(out) + '\n')
            sys.stdout.flush()
        return
    if not args.input or not args.policy:
        ap.error('--input SNAPSHOT.json and at least one POLICY are needed (or --serve)')
    with open(args.input) as f:
        snaps = json.load(f)
    fields = None
    if args.fields:
        with open(args.fields) as f:
            fields = json.load(f)
    text = '\n'.join(open(p).read() for p in args.policy)
    out = run_policy(entity_mod, parser_mod, text, snaps if isinstance(snaps, list) else [snaps], fields)
    print(dump(out if isinstance(snaps, list) else out[0], indent=2))


if __name__ == '__main__':
    main()
