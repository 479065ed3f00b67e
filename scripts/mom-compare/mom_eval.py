#!/usr/bin/env python3
# Runs oVirt MOM's own policy evaluator (from a MOM checkout given with --mom; none of MOM's
# code is in this repository) on ballast `policy eval` snapshots, the way MOM's daemon does:
# entities built as Monitor.interrogate() builds them, Host and Guests (a dict-values view)
# bound as Policy.evaluate() binds them, a fresh evaluator per run, any exception aborting it.
#
# Reads JSON lines on stdin, {"policy": TEXT, "snapshots": [SNAPSHOT, ...]}, and writes one
# JSON line per request: a list with, per snapshot, {"host": {"controls", "vars"}, "guests":
# [{"name", "controls", "vars"}]} or {"error": MESSAGE}.
import argparse
import json
import os
import sys
import types


def load_mom(root):
    # Import mom/Entity.py and mom/Policy/Parser.py without mom/__init__.py (the daemon).
    if not os.path.isfile(os.path.join(root, 'mom', 'Policy', 'Parser.py')):
        sys.exit('mom_eval: %s is not a MOM checkout (no mom/Policy/Parser.py)' % root)
    for name, path in (('mom', 'mom'), ('mom.Policy', os.path.join('mom', 'Policy'))):
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(root, path)]
        sys.modules[name] = pkg
    import mom.Entity as entity_mod
    import mom.Policy.Parser as parser_mod
    return entity_mod, parser_mod


class SnapshotMonitor:
    """What an Entity asks of its monitor: the fields collectors declare, a logger, a variable store."""

    def __init__(self, fields):
        self.valid_fields = fields

        class Quiet:
            def debug(self, *a):
                pass
        self.logger = Quiet()

    def update_variables(self, variables):
        pass


def make_entity(entity_mod, raw, fields):
    e = entity_mod.Entity(monitor=SnapshotMonitor(fields))
    for k, v in (raw.get('props') or {}).items():
        e._set_property(k, v)
    for k, v in (raw.get('vars') or {}).items():
        e._set_variable(k, v)
    e._set_statistics(raw.get('stats') or [])
    e._finalize()
    return e


def run_one(entity_mod, parser_mod, code, snap):
    fields = set()
    for ent in [snap['host']] + list(snap.get('guests') or []):
        for row in ent.get('stats') or []:
            fields.update(row.keys())
    host = make_entity(entity_mod, snap['host'], fields)
    guests = [make_entity(entity_mod, g, fields) for g in snap.get('guests') or []]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--mom', required=True, help='path to a checkout of github.com/oVirt/mom')
    args = ap.parse_args()
    entity_mod, parser_mod = load_mom(os.path.abspath(args.mom))
    sys.setrecursionlimit(10000)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            code = parser_mod.get_code(parser_mod.Evaluator(), req['policy'] or '0')
            out = [run_one(entity_mod, parser_mod, code, s) for s in req['snapshots']]
        except Exception as e:
            out = [{'error': 'policy does not load: %s: %s' % (type(e).__name__, e)} for _ in req['snapshots']]
        sys.stdout.write(json.dumps(out, default=repr) + '\n')
        sys.stdout.flush()


if __name__ == '__main__':
    main()
