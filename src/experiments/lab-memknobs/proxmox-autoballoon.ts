/**
 * Proxmox VE's automatic ballooning (pvestatd), as a pure function: one round's new balloon
 * targets from the host's memory and each VM's balloon status. Written from its documented and
 * observed behaviour (pve-docs qm.adoc "Automatic Memory Allocation", pvenode.adoc
 * "ballooning-target") and checked against pve-manager's PVE/AutoBalloon.pm, PVE/Service/
 * pvestatd.pm and test/balloontest.pl (whose expected values test/unit/experiments/
 * proxmox-autoballoon.test.ts replays), qemu-server's vmstatus and pve-qemu's query-balloon
 * patch. What a round does:
 *
 * - Every 10 s (pvestatd's update interval; its first round is one interval after start), the
 *   goal is `total x target% - used`, target = the node's `ballooning-target` (default 80),
 *   used = MemTotal - MemAvailable. A goal within +-10 MiB does nothing.
 * - Only VMs with a running balloon (`actual` > 0), a minimum (`balloon:` > 0 in the VM's
 *   config) and shares other than 0 take part. Shares default to 1000.
 * - A VM is "short" unless its guest reports free memory (MemFree, pve-qemu's `free_mem`)
 *   above a quarter of its minimum and its balloon is at least its minimum.
 * - Growing (goal > 10 MiB) hands the goal out to the short VMs first, and to all VMs only if
 *   the short ones took nothing; shrinking (goal < -10 MiB) takes it from the VMs with free
 *   memory first, and from all only if those gave nothing.
 * - Within a group, what the VMs hold above their minimums plus the goal is split in
 *   proportion to their shares, each VM's fair size clamped to [minimum, maximum]; each VM
 *   moves towards its fair size by at most 100 MiB from where its balloon is this round. The
 *   split repeats over the VMs not yet at their fair size with what is left of the goal, until
 *   the goal is used up or a pass moves nothing. While growing, a VM above its fair size still
 *   shrinks towards it (the split rebalances); while shrinking, none grows.
 *
 * Where this version may differ from pvestatd:
 * - Sizes are KiB (ballast's unit) where pvestatd computes in bytes, so each fair share is
 *   truncated to a KiB rather than a byte.
 * - The host is whatever the caller says: the lab gives it the run's memory domain (total =
 *   its limit, used = limit - (unused + file cache)), where pvestatd reads /proc/meminfo's
 *   MemTotal and MemAvailable (the kernel's estimate counts only part of the file cache, and
 *   reclaimable slab too).
 * - VMs locked for migration, which pvestatd skips, do not exist here.
 * - pvestatd iterates a Perl hash (no fixed order); the result does not depend on the order,
 *   as each pass computes every VM's fair size before applying any, and so does this one.
 */

export const MIB_KIB = 1024;

/** pvestatd's constants (pvestatd.pm, AutoBalloon.pm, qemu-server's `shares` default). */
export const PVE_AUTOBALLOON = {
  /** Seconds between rounds (pvestatd's $updatetime). */
  intervalS: 10,
  /** Host memory usage aimed at, percent (`ballooning-target`, a node option). */
  targetPercent: 80,
  /** The most one VM's balloon moves in a round, KiB. */
  maxStepKiB: 100 * MIB_KIB,
  /** Goals within this of zero are left alone, KiB. */
  deadBandKiB: 10 * MIB_KIB,
  /** A VM's weight when its config sets none. */
  defaultShares: 1000,
  /** A VM whose free memory is at most this share of its minimum is "short". */
  shortFreeShare: 0.25,
} as const;

/** One VM as a round sees it, sizes in KiB. */
export interface AutoBalloonVm {
  id: string;
  /** The balloon's current size (query-balloon `actual`); 0 or null: no running balloon driver. */
  balloonKiB: number | null;
  /** The VM's configured minimum (`balloon:`); 0 or null: not auto-ballooned. */
  minKiB: number | null;
  /** The VM's memory (`memory:`, query-balloon `max_mem`). */
  maxKiB: number;
  /** The guest's free memory (MemFree) as its balloon driver last reported it; null: unknown. */
  freeKiB: number | null;
  /** Weight for the split; undefined: the default; 0: left out of auto-ballooning. */
  shares?: number;
}

/** The change that brings the host to its target usage: positive = VMs may grow, KiB. */
export function hostGoalKiB(totalKiB: number, usedKiB: number, targetPercent: number = PVE_AUTOBALLOON.targetPercent): number {
  return Math.trunc((totalKiB * targetPercent) / 100 - usedKiB);
}

export interface AutoBalloonOptions {
  maxStepKiB?: number;
  deadBandKiB?: number;
}

interface Member {
  id: string;
  balloon: number;
  min: number;
  max: number;
  shares: number;
}

/** VMs pvestatd balloons, and which of them are short of memory. */
function eligible(vms: readonly AutoBalloonVm[]): { all: Member[]; short: Member[]; roomy: Member[] } {
  const all: Member[] = [];
  const short: Member[] = [];
  const roomy: Member[] = [];
  for (const vm of vms) {
    if (!vm.balloonKiB || !vm.minKiB || vm.shares === 0) continue;
    const m: Member = { id: vm.id, balloon: vm.balloonKiB, min: vm.minKiB, max: vm.maxKiB, shares: vm.shares || PVE_AUTOBALLOON.defaultShares };
    all.push(m);
    const freeEnough = !!vm.freeKiB && vm.freeKiB > vm.minKiB * PVE_AUTOBALLOON.shortFreeShare && vm.balloonKiB >= vm.minKiB;
    (freeEnough ? roomy : short).push(m);
  }
  return { all, short, roomy };
}

/**
 * Hands `amount` KiB (positive: to give, negative: to take) to `group` in proportion to their
 * shares, writing each moved VM's new size into `plan`; returns what could not be placed.
 */
function share(plan: Map<string, number>, group: readonly Member[], amount: number, maxStep: number): number {
  let left = amount;
  const settled = new Set<string>();
  while (left !== 0) {
    const open = group.filter((m) => !settled.has(m.id));
    let held = 0;
    let weight = 0;
    for (const m of open) {
      held += (plan.get(m.id) ?? m.balloon) - m.min;
      weight += m.shares;
    }
    const pool = held + left;
    let moved = 0;
    let anyMove = false;
    for (const m of open) {
      const fair = Math.min(m.max, Math.max(m.min, m.min + Math.trunc((pool / weight) * m.shares)));
      let next: number;
      if (amount > 0 && fair > m.balloon) next = Math.min(m.balloon + maxStep, fair);
      else if (fair < m.balloon) next = Math.max(m.balloon - maxStep, fair);
      else {
        settled.add(m.id);
        continue;
      }
      if (next === m.balloon) continue;
      const before = plan.get(m.id) ?? m.balloon;
      plan.set(m.id, next);
      if (next !== before) {
        moved += next - before;
        anyMove = true;
      }
    }
    left -= moved;
    if (!anyMove) break;
  }
  return left;
}

/**
 * One round: the new balloon size (KiB) of each VM whose balloon should move, given the goal
 * from hostGoalKiB. VMs absent from the result stay as they are.
 */
export function autoBalloonRound(vms: readonly AutoBalloonVm[], goalKiB: number, o: AutoBalloonOptions = {}): Map<string, number> {
  const maxStep = o.maxStepKiB ?? PVE_AUTOBALLOON.maxStepKiB;
  const deadBand = o.deadBandKiB ?? PVE_AUTOBALLOON.deadBandKiB;
  const { all, short, roomy } = eligible(vms);
  const plan = new Map<string, number>();
  if (goalKiB > deadBand) {
    const left = share(plan, short, goalKiB, maxStep);
    if (left >= goalKiB) share(plan, all, left, maxStep);
  } else if (goalKiB < -deadBand) {
    const left = share(plan, roomy, goalKiB, maxStep);
    if (left <= goalKiB) share(plan, all, left, maxStep);
  }
  const balloon = new Map(all.map((m) => [m.id, m.balloon]));
  for (const [id, size] of plan) if (size === balloon.get(id)) plan.delete(id);
  return plan;
}
