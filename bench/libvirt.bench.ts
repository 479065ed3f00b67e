// Guest statistics through the libvirt driver (one connect-get-all-domain-stats RPC for all
// guests) versus what a tool spawning `virsh dommemstat` once per guest pays, on the lab's
// real guests; and one memory-stats RPC versus one virsh spawn. Ratios are measured in the
// same run; no absolute thresholds.
import { spawnSync } from 'node:child_process';
import { ensureLibvirtd, libvirtdIdle, stopLibvirtd } from '../src/lab/libvirtd.js';
import { startLabGuests } from '../src/lab/guests.js';
import { LibvirtHypervisor } from '../src/hypervisor/libvirt/index.js';

const GUESTS = 3;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function virshDommemstat(name: string): number {
  const t0 = performance.now();
  const r = spawnSync('virsh', ['-q', '-c', 'qemu:///system', 'dommemstat', name], { encoding: 'utf8' });
  const ms = performance.now() - t0;
  if (r.status !== 0 || !/^actual \d+/m.test(r.stdout)) throw new Error(`virsh dommemstat ${name} failed: ${r.stderr}`);
  return ms;
}

const fmt = (ms: number) => `${ms.toFixed(2)} ms`;

export default async function libvirtBench(): Promise<void> {
  const why =
    process.getuid?.() !== 0
      ? 'not root'
      : spawnSync('qemu-system-x86_64', ['--version']).status !== 0
        ? 'qemu-system-x86_64 missing'
        : spawnSync('virsh', ['--version']).status !== 0
          ? 'virsh missing'
          : null;
  if (why) {
    console.log(`libvirt bench SKIPPED: ${why} (needs the real-VM lab)`);
    return;
  }
  const libvirtd = await ensureLibvirtd();
  const guests = await startLabGuests({
    count: GUESTS,
    memMiB: 256,
    names: Array.from({ length: GUESTS }, (_, i) => `lvb${i + 1}`),
    workload: '',
    statsPeriodS: 1,
  });
  const names = guests.map((g) => g.name);
  const hv = new LibvirtHypervisor({ statsPeriodSec: 1 });
  try {
    await hv.connect();
    // Wait for guest-side balloon numbers so both paths read the same full record.
    for (let i = 0; i < 100; i++) {
      const s = (await hv.collect()).filter((g) => names.includes(g.name));
      if (s.length === GUESTS && s.every((g) => !g.stale)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const client = hv.rawClient!;
    const allGuests = (await hv.collect()).length;

    // Driver: all guests' stats in one collection.
    for (let i = 0; i < 5; i++) await hv.collect();
    const collectMs: number[] = [];
    for (let i = 0; i < 40; i++) {
      const t0 = performance.now();
      await hv.collect();
      collectMs.push(performance.now() - t0);
    }

    // virsh: one spawn per guest, as a tool polling through virsh would.
    virshDommemstat(names[0]!);
    const virshRoundMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      let sum = 0;
      for (const n of names) sum += virshDommemstat(n);
      virshRoundMs.push(sum);
    }

    // One memory-stats RPC vs one virsh spawn.
    const dom = await client.lookupByName(names[0]!);
    for (let i = 0; i < 5; i++) await client.memoryStats(dom);
    const rpcMs: number[] = [];
    for (let i = 0; i < 60; i++) {
      const t0 = performance.now();
      await client.memoryStats(dom);
      rpcMs.push(performance.now() - t0);
    }
    const spawnMs: number[] = [];
    for (let i = 0; i < 10; i++) spawnMs.push(virshDommemstat(names[0]!));

    const collect = median(collectMs);
    const round = median(virshRoundMs);
    const rpc = median(rpcMs);
    const spawn1 = median(spawnMs);
    console.log(`guests running under libvirtd: ${allGuests} (lab guests of this bench: ${GUESTS})`);
    console.log(`driver collect (1 bulk RPC, all ${allGuests} guests)      median ${fmt(collect)}  (n=${collectMs.length})`);
    console.log(`virsh dommemstat x ${GUESTS} lab guests (spawned)          median ${fmt(round)}  (n=${virshRoundMs.length})`);
    console.log(`ratio virsh-per-guest / driver                    ${(round / collect).toFixed(1)}x`);
    console.log(
      `one DOMAIN_MEMORY_STATS RPC                        median ${fmt(rpc)}  p90 ${fmt([...rpcMs].sort((a, b) => a - b)[Math.floor(rpcMs.length * 0.9)]!)}`,
    );
    console.log(`one virsh dommemstat spawn                         median ${fmt(spawn1)}`);
    console.log(`ratio spawn / RPC                                  ${(spawn1 / rpc).toFixed(1)}x`);
  } finally {
    await hv.close();
    for (const n of names) spawnSync('virsh', ['-q', '-c', 'qemu:///system', 'destroy', n]);
    // Leave the host as found: a libvirtd this bench started goes when nothing else uses it.
    if (libvirtd.startedNow && (await libvirtdIdle()).idle) await stopLibvirtd();
  }
}
