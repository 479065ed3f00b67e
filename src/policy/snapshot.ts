// The snapshot `ballast policy eval` reads (POLICY-LANGUAGE.md): host and guests, each with
// props, a sample history (oldest first) and variables. Validated with zod so a bad file
// gets an error that names the bad field.
import { z } from 'zod';
import type { EntityState } from './entity.js';
import { parsePyJson } from './json.js';

const Scalar = z.union([z.number(), z.string(), z.boolean(), z.null()]);
const EntitySchema = z.object({
  props: z.record(z.string(), z.unknown()).optional(),
  stats: z.array(z.record(z.string(), Scalar)).optional(),
  vars: z.record(z.string(), z.unknown()).optional(),
});
const GuestSchema = EntitySchema.extend({
  props: z.looseObject({ name: z.string() }),
});
export const SnapshotSchema = z.object({
  host: EntitySchema,
  guests: z.array(GuestSchema).optional(),
});

export interface Snapshot {
  host: EntityState;
  guests: EntityState[];
}

/** A problem with the input file: bad JSON or a bad shape. */
export class SnapshotError extends Error {}

function pathText(prefix: string, path: ReadonlyArray<PropertyKey>): string {
  let s = prefix;
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : `.${String(p)}`;
  return s;
}

function entityState(raw: Record<string, unknown>): EntityState {
  return {
    props: (raw['props'] as Record<string, unknown> | undefined) ?? {},
    stats: (raw['stats'] as Array<Record<string, unknown>> | undefined) ?? [],
    vars: (raw['vars'] as Record<string, unknown> | undefined) ?? {},
  };
}

/**
 * Reads one snapshot or a JSON array of them. Numbers keep Python's int/float distinction.
 * Throws SnapshotError naming what is wrong.
 */
export function parseSnapshots(text: string, source = 'input'): { snapshots: Snapshot[]; isArray: boolean } {
  let plain: unknown;
  try {
    plain = JSON.parse(text);
  } catch (e) {
    throw new SnapshotError(`${source}: invalid JSON: ${(e as Error).message}`);
  }
  const isArray = Array.isArray(plain);
  const list = isArray ? (plain as unknown[]) : [plain];
  list.forEach((snap, i) => {
    const r = SnapshotSchema.safeParse(snap);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      const where = pathText(isArray ? `snapshot[${i}]` : 'snapshot', issue.path);
      throw new SnapshotError(`${source}: ${where}: ${issue.message}`);
    }
  });
  let typed: unknown;
  try {
    typed = parsePyJson(text);
  } catch (e) {
    throw new SnapshotError(`${source}: cannot read numbers: ${(e as Error).message}`);
  }
  const typedList = (isArray ? typed : [typed]) as Array<Record<string, unknown>>;
  const snapshots = typedList.map((s) => ({
    host: entityState(s['host'] as Record<string, unknown>),
    guests: ((s['guests'] as Array<Record<string, unknown>> | undefined) ?? []).map(entityState),
  }));
  return { snapshots, isArray };
}
